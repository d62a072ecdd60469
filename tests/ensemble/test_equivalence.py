"""Ensemble members equal the same configs trained alone; every per-run tool works on a member."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from project.data.arithmetic import all_pairs, split_indices
from project.ensemble.stacked import StackedAdamW, StackedNets
from project.models.tiny_transformer import TinyTransformer
from tests.conftest import SMALL, train_in_process

# p=23, a narrow net, 4 epochs: seconds for the whole ensemble
NET = ["model.net.d_model=32", "model.net.n_heads=2", "model.net.d_mlp=64"]
COMMON = [
    *SMALL, *NET, "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2", "logger=csv",
    "callbacks.progress_bar=null", "callbacks.progress_measures.every_n_epochs=0",
    "callbacks.snapshots.every_n_epochs=2",
]  # fmt: skip
# the sweep is seed x lr with the split seed and the weight decay tied to them, so its members
# differ in seed (init), split, lr and weight decay; these two differ in all four
SINGLES = [(0, "0.01"), (1, "0.003")]
TIED = ["data.split_seed=${seed}", "model.optimizer.weight_decay=${model.optimizer.lr}"]


def test_stacked_adamw_is_torch_adamw_bitwise() -> None:
    """Three members (seed, lr, wd differing), 12 full-batch steps with a warm-up: the stacked
    forward/backward and ``StackedAdamW`` give torch's weights: bitwise where the CPU's batched
    and single matmul kernels agree (seen on some machines), else within float32 rounding
    (seen on AVX-512 Xeons: the batched kernel sums in another order)."""
    p = 23
    tokens, answers = all_pairs("add", p)
    train, _ = split_indices(len(answers), 0.5, 598)
    members = [(0, 1e-2, 1.0), (1, 3e-3, 0.3), (2, 1e-2, 3.0)]
    nets = []
    for seed, _, _ in members:
        torch.manual_seed(seed)
        nets.append(TinyTransformer(d_vocab=p + 1, n_ctx=3, d_vocab_out=p, d_model=32, n_heads=2))
    expected = []
    for (_, lr, wd), net in zip(members, nets, strict=True):
        net = copy.deepcopy(net)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1, (t + 1) / 5))
        for _ in range(12):
            logits = net(tokens[train], last_only=True)[:, -1]
            loss = F.cross_entropy(logits.double(), answers[train], reduction="sum") / len(train)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        expected.append(net.state_dict())
    stacked = StackedNets(nets)
    opt = StackedAdamW(stacked.parameters(), [wd for *_, wd in members], betas=(0.9, 0.98))
    x, y = tokens[train].expand(3, -1, -1), answers[train].expand(3, -1)
    for step in range(12):
        logits = stacked.logits(x, last_only=True)  # [3, n, p]
        losses = F.cross_entropy(logits.double().flatten(0, 1), y.flatten(), reduction="none")
        opt.zero_grad()
        (losses.view(3, -1).sum(1) / len(train)).sum().backward()
        opt.step([lr * min(1, (step + 1) / 5) for _, lr, _ in members])
    for i, want in enumerate(expected):
        got = stacked.member_state_dict(i)
        for k in want:  # float32 rounding of batched vs single matmuls: CPU kernels may differ
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4)  # 1% of a step


def run_main(*args: str) -> None:
    """``python -m project.train.run *args`` in this process (Hydra's multirun may exit 0)."""
    from project.train import run as run_module

    argv = sys.argv
    sys.argv = ["project.train.run", *args]
    try:
        run_module.main()
    except SystemExit as exc:  # Hydra exits 0 after a multirun in some versions
        if exc.code:
            raise
    finally:
        sys.argv = argv


def _ensemble_sweep(tmp_path: Path, *extra: str) -> Path:
    """The sweep (2 seeds x 2 lrs, 4 members) through the CLI entrypoint; returns its dir."""
    sweep = tmp_path / "sweep"
    run_main(
        "-m", *COMMON, *TIED, "seed=0,1", "model.optimizer.lr=0.01,0.003", *extra,
        "hydra/launcher=ensemble", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    return sweep


def test_members_equal_single_runs_and_work_with_run_tools(tmp_path: Path) -> None:
    _check_members(tmp_path)


@pytest.mark.slow
def test_minibatch_members_equal_single_runs(tmp_path: Path) -> None:
    """Minibatches of 100 (3 per epoch), each member shuffled by its own seed."""
    _check_members(tmp_path, "data.batch_size=100")


def _check_members(tmp_path: Path, *extra: str) -> None:
    from project.runs import collect_runs
    from project.runs.load import load_run
    from project.runs.sweep import phase_table, seed_stats
    from project.stored import load_checkpoint

    steps_per_epoch = 3 if extra else 1
    sweep = _ensemble_sweep(tmp_path, *extra)
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    assert len(jobs) == 4
    table = collect_runs(sweep)
    assert len(table) == 4 and set(table["status"]) == {"finished"}
    by_point = {
        (int(r["seed"]), str(r["model.optimizer.lr"])): Path(r["run_dir"])
        for _, r in table.iterrows()
    }
    for seed, lr in SINGLES:
        alone = train_in_process(
            tmp_path, *COMMON, *TIED, *extra, f"seed={seed}", f"model.optimizer.lr={lr}"
        )
        member = by_point[(seed, str(float(lr)))]
        assert load_run(member).config["data"]["split_seed"] == seed
        for name in ("last.ckpt", "epoch_000002.ckpt"):
            want, _ = load_checkpoint(alone / "checkpoints" / name)
            got, hparams = load_checkpoint(member / "checkpoints" / name)
            w, g = want.state_dict(), got.state_dict()
            diff = max((w[k] - g[k]).abs().max().item() for k in w)
            assert diff <= 1e-6, f"{member.name} {name}: max |diff| {diff}"
            epochs = 4 if name == "last.ckpt" else 2
            assert hparams["global_step"] == epochs * steps_per_epoch
        a, b = load_run(alone), load_run(member)
        cols = ["epoch", "step", "train/acc", "val/acc"]
        assert a.metrics[cols].fillna(-1).equals(b.metrics[cols].fillna(-1))
        assert [e for e, _ in a.snapshot_paths] == [e for e, _ in b.snapshot_paths] == [0, 2, 4]
    stats = seed_stats(table)
    assert len(stats) == 2 and set(stats["n"]) == {2}
    assert len(phase_table(table, "model.optimizer.lr", "seed")) == 4


@pytest.mark.parametrize("extra", [["callbacks.progress_measures.every_n_epochs=1"]])
def test_unsupported_jobs_run_alone(extra: list[str]) -> None:
    from omegaconf import OmegaConf

    from project.ensemble.launch import plan_groups

    base = {
        "seed": 0,
        "model": {
            "_target_": "project.lit_module.LitCausalLM",
            "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.01, "weight_decay": 1.0},
        },
        "trainer": {"max_epochs": 3},
        "callbacks": {"progress_measures": {"every_n_epochs": 0}},
        "data": {"modulus": 23, "frac_train": 0.5},
    }
    configs = []
    for seed, wd, frac, measures in [
        (0, 1, 0.5, 0),
        (1, 3, 0.5, 0),
        (0, 1, 0.7, 0),
        (2, 1, 0.5, 5),
    ]:
        cfg = OmegaConf.create(base)
        cfg.seed, cfg.model.optimizer.weight_decay, cfg.data.frac_train = seed, wd, frac
        cfg.callbacks.progress_measures.every_n_epochs = measures
        configs.append(cfg)
    groups, alone = plan_groups(configs, max_members=64, min_members=2)
    assert groups == [[0, 1]]
    assert "a group of 1" in alone[2][0]
    assert "progress_measures" in alone[3][0]
    extra_callback = OmegaConf.create(base)
    extra_callback.callbacks.stop_at = {"_target_": "lightning.pytorch.callbacks.EarlyStopping"}
    _, alone = plan_groups([configs[0], extra_callback], max_members=64, min_members=1)
    assert "callbacks.stop_at" in alone[1][0]
    groups, alone = plan_groups(configs[:2], max_members=1, min_members=1)
    assert groups == [[0], [1]] and not alone


def test_the_default_config_packs_into_one_group() -> None:
    """The docs' sweep command on the default config (every default callback, the LLC monitor off)
    trains as one ensemble; the LLC monitor on sends the job to the normal path."""
    from hydra import compose, initialize_config_dir

    from project.ensemble.launch import plan_groups
    from project.train.run import CONFIG_DIR

    overrides = ["data.modulus=31", "callbacks.progress_measures.every_n_epochs=0"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        configs = [compose("config", [*overrides, f"seed={s}"]) for s in (0, 1)]
        llc_on = compose(
            "config", [*overrides, "seed=2", "llc=sgld", "callbacks.llc.every_n_epochs=5"]
        )
    groups, alone = plan_groups([*configs, llc_on], max_members=64, min_members=2)
    assert groups == [[0, 1]], alone
    assert alone[2] == ["callbacks.llc.every_n_epochs is not 0"]


def test_plugin_discovery_imports_nothing_new() -> None:
    """Hydra imports every ``hydra_plugins`` module on every run: the launcher's must not pull in
    ``project.ensemble`` (or torch) on the plain training path."""
    import subprocess

    code = (
        "import sys; import hydra_plugins.project_ensemble_launcher.ensemble_launcher; "
        "print(sorted(m for m in sys.modules if m.startswith(('project', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_sigterm_then_rerun_resumes_members_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM mid-epoch: the epoch finishes, every member saves ``last.ckpt`` and a ``preempted``
    summary, exit 143; the same command again resumes them and ends where an uninterrupted
    ensemble ends (weights bitwise, same metric rows)."""
    import os
    import signal

    from project.checkpoint import read_checkpoint
    from project.ensemble import train as ensemble_train
    from project.runs.load import load_run

    whole = _ensemble_sweep(tmp_path / "whole")
    calls = {"n": 0}
    real = ensemble_train._loss_and_counts

    def killed_on_fourth_call(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 4:  # the third epoch's training step
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ensemble_train, "_loss_and_counts", killed_on_fourth_call)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            _ensemble_sweep(tmp_path / "cut")
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert exc.value.code == 143
    cut = tmp_path / "cut" / "sweep"
    summary = (cut / "0" / "summary.json").read_text()
    assert '"status": "preempted"' in summary and '"epochs": 3' in summary
    monkeypatch.setattr(ensemble_train, "_loss_and_counts", real)
    _ensemble_sweep(tmp_path / "cut")
    for job in ("0", "1", "2", "3"):
        a = read_checkpoint(whole / job / "checkpoints" / "last.ckpt")
        b = read_checkpoint(cut / job / "checkpoints" / "last.ckpt")
        assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (3, 4)
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), f"job {job}: {key}"
        ra, rb = load_run(whole / job), load_run(cut / job)
        assert ra.metrics.fillna(-1).equals(rb.metrics.fillna(-1))
        assert '"action": "resume"' in (cut / job / "attempts.jsonl").read_text()


@pytest.mark.slow
def test_mixed_sweep_packs_some_jobs_and_runs_the_rest_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progress measures on for half the sweep: those jobs run through the normal path
    (progress.jsonl written), the others as one ensemble; all four are finished run dirs."""
    from project.runs import collect_runs

    sweep = tmp_path / "sweep"
    argv = sys.argv
    sys.argv = [
        "project.train.run", "-m", *COMMON, "seed=0,1",
        "callbacks.progress_measures.every_n_epochs=0,2", "hydra/launcher=ensemble",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    try:
        from project.train import run as run_module

        run_module.main()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "train together (2 members)" in out and out.count("runs alone") == 2
    table = collect_runs(sweep)
    assert len(table) == 4 and set(table["status"]) == {"finished"}
    alone = table[table["callbacks.progress_measures.every_n_epochs"] == 2]
    assert all((Path(d) / "progress.jsonl").is_file() for d in alone["run_dir"])
    packed = table[table["callbacks.progress_measures.every_n_epochs"] == 0]
    for run_dir in packed["run_dir"]:
        assert '"members": 2' in (Path(run_dir) / "summary.json").read_text()
