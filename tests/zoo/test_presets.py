"""Each zoo preset through the real entrypoint: a fast smoke run (default suite) and a slow run that
checks the known result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from project.runs.load import load_run
from tests.conftest import train_in_process

QUIET = [
    "trainer=cpu",
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.snapshots.every_n_epochs=0",
]
ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "induction": [
        "data.span=4",
        "data.max_gap=2",
        "data.val_gaps=[1]",
        "data.steps_per_epoch=2",
        "data.batch_size=8",
        "data.n_val=16",
        "model.net.d_model=16",
    ],
    "sparse_parity": [
        "data.n=6",
        "data.k=2",
        "data.steps_per_epoch=2",
        "data.batch_size=8",
        "data.n_val=16",
        "model.net.d_model=16",
        "model.net.d_mlp=16",
    ],
    "s5": ["data.group=S3", "model.net.d_model=16", "model.net.d_mlp=16"],
    "text": [
        f"data.path={ROOT / 'docs' / 'zoo.md'}",
        "data.seq_len=8",
        "data.stride=256",
        "model.net.d_model=16",
        "model.net.d_mlp=16",
    ],
}


@pytest.mark.parametrize("task", sorted(FAST))
def test_preset_runs_and_rebuilds(tmp_path, task):
    run_dir = train_in_process(
        tmp_path, f"experiment={task}", *QUIET, *FAST[task], "trainer.max_epochs=2"
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2
    run = load_run(run_dir)
    dm, net = run.datamodule(), run.final_model()
    tokens, labels = dm.splits()["val"]
    logits = net(tokens[:4])
    assert logits.shape[:2] == labels[:4].shape and torch.isfinite(logits).all()


@pytest.mark.slow
def test_induction_forms_prev_token_and_induction_heads_at_unseen_periods(tmp_path):
    from project.interp.composition import induction_ablation_table
    from project.interp.induction import head_detector, repeat_query_mask

    run_dir = train_in_process(tmp_path, "experiment=induction", *QUIET)
    run = load_run(run_dir)
    dm, net = run.datamodule(), run.final_model()
    tokens, labels = dm.splits()["val"]  # periods never seen in training
    tokens, labels = tokens[:256], labels[:256]
    tl = head_detector(net, tokens)  # TransformerLens detect_head normalisation
    sq = head_detector(net, tokens, repeat_query_mask(labels), reduce="supervised_query")
    print(tl.to_string(), sq.to_string(), sep="\n")  # the scores the docs quote (pytest -s)
    for scores in (tl, sq):
        layer0, layer1 = scores[scores.layer == 0], scores[scores.layer == 1]
        assert layer0.previous_token.max() > layer1.previous_token.max()
        assert layer1.induction.max() > 3 * layer0.induction.max()
    assert sq[sq.layer == 1].induction.max() >= 0.6 and tl[tl.layer == 1].induction.max() >= 0.3
    # causal evidence: mean-ablating the L0 heads together removes the L1 induction attention and
    # the accuracy on repeated tokens; the best L1 induction head is used by the model
    table = induction_ablation_table(net, tokens, labels)
    print(table.to_string())  # the table the docs quote (pytest -s)
    clean = table[table.ablated == "clean"].iloc[0]
    assert clean.acc >= 0.85
    layer1 = tl[tl.layer == 1]
    best = f"induction_L1H{int(layer1.loc[layer1.induction.idxmax(), 'head'])}"
    every = table[table.ablated == "L0 all"].iloc[0]
    assert every[best] < 0.5 * clean[best] and every.d_acc < -0.5
    singles = table[table.ablated.str.fullmatch(r"L0H\d")]
    assert singles[f"d_{best}"].min() < -0.05  # at least one L0 head builds its keys alone
    # each L1 head carries part of the repeated-token loss; all of them together, the accuracy
    # (seed 0: four redundant induction heads, each -0.4 to -1.5 points of accuracy alone)
    assert (table[table.ablated.str.fullmatch(r"L1H\d")].d_loss > 0.02).all()
    assert table[table.ablated == "L1 all"].iloc[0].d_acc < -0.5


@pytest.mark.slow
def test_sparse_parity_reaches_100_percent_and_attends_to_the_secret_bits(tmp_path):
    run_dir = train_in_process(tmp_path, "experiment=sparse_parity", *QUIET)
    run = load_run(run_dir)
    dm, net = run.datamodule(), run.final_model()
    tokens, labels = dm.splits()["val"]
    with torch.no_grad():
        logits, cache = net.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")
    assert float((logits[:, -1].argmax(-1) == labels[:, -1]).float().mean()) == 1.0
    attn = cache["blocks.0.attn.hook_pattern"][:, :, -1, :-1].mean((0, 1))  # answer -> bits
    top = set(attn.topk(dm.k).indices.tolist())
    assert top == set(dm.secret.tolist())


@pytest.mark.slow
def test_s5_generalises(tmp_path):
    run_dir = train_in_process(tmp_path, "experiment=s5", *QUIET)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"] >= 0.99
    run = load_run(run_dir)
    acc = run.datamodule().per_element_accuracy(run.final_model(), "val")
    assert float(acc["left"].min()) >= 0.9


@pytest.mark.slow
def test_text_beats_unigram_entropy_and_generates(tmp_path):
    from project.generate import generate

    run_dir = train_in_process(
        tmp_path, "experiment=text", f"data.path={ROOT / 'README.md'}", *QUIET
    )
    run = load_run(run_dir)
    dm = run.datamodule()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["val/loss"] < dm.unigram_entropy()
    text = generate(run_dir, prompt="uv run ", tokens=50, temperature=0.8, top_k=10)
    assert text.startswith("uv run ") and len(text) == 57
