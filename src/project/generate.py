"""Sample from a character-level LM run (``experiment=text``).

    python -m project.generate <run dir or checkpoint> --prompt "# " --tokens 300 \
        [--temperature 0.8] [--top-k 10] [--seed 0] [--data-path FILE]

The net comes from the checkpoint (``project.checkpoint.load_checkpoint``: ``<run
dir>/checkpoints/last.ckpt`` when given a run dir); the vocabulary is rebuilt from the run's
``resolved_config.yaml`` data node (``TextDataModule``: the file's sorted characters, or the
node's ``vocab``). ``--data-path`` points at the text file when it moved. Prints the prompt
followed by the sampled continuation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_vocab(run_dir: Path, data_path: str | None = None) -> Any:
    """The run's ``TextDataModule`` rebuilt from ``resolved_config.yaml`` (``data_path``
    replaces ``data.path``; a relative path is tried from the cwd, then from the run dir's
    project root)."""
    from project.stored import build_task, run_config

    config = run_config(run_dir)
    data = dict(config.get("data") or {})
    if "TextDataModule" not in str(data.get("_target_", "")):
        raise ValueError(
            f"{run_dir}: data._target_={data.get('_target_')!r} is not a text task "
            "(project.data.text.TextDataModule); generation needs a character vocabulary"
        )
    if data_path is not None:
        data["path"] = data_path
    path = Path(str(data["path"])).expanduser()
    if not path.is_absolute() and not path.is_file():
        for base in run_dir.resolve().parents:
            if (base / path).is_file():
                data["path"] = str(base / path)
                break
    return build_task(run_dir, config, path=data["path"])


@torch.no_grad()
def sample(
    net: nn.Module,
    prompt_ids: torch.Tensor,
    n_tokens: int,
    n_ctx: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Autoregressively extend ``prompt_ids [pos]`` by ``n_tokens`` ids (context cropped to
    ``n_ctx``). ``temperature=0`` is greedy; ``top_k`` keeps the k most likely ids."""
    ids = prompt_ids.clone()
    for _ in range(n_tokens):
        context = ids[-n_ctx:][None]
        logits = net(context)[0, -1].double()
        if temperature <= 0:
            nxt = logits.argmax()
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                kth = logits.topk(top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)[0]
        ids = torch.cat([ids, nxt.view(1).to(ids.dtype)])
    return ids


def generate(
    target: str | Path,
    prompt: str = "\n",
    tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    data_path: str | None = None,
) -> str:
    """Prompt + ``tokens`` sampled characters from a text run (see the module doc)."""
    from project.eval import resolve
    from project.stored import load_checkpoint

    ckpt, run_dir = resolve(target)
    task = load_vocab(run_dir, data_path)
    net, hparams = load_checkpoint(ckpt)
    n_ctx = int((hparams.get("net") or {}).get("n_ctx") or task.seq_len)
    prompt_ids = task.encode(prompt) if prompt else torch.tensor([0])
    generator = torch.Generator().manual_seed(seed)
    out = sample(net, prompt_ids, tokens, n_ctx, temperature, top_k, generator)
    return task.decode(out[len(prompt_ids) :] if not prompt else out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m project.generate", description="Sample from a char-level LM run."
    )
    parser.add_argument("target", help="run dir or checkpoint (.ckpt)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--tokens", type=int, default=200, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-path", default=None, help="the text file, if it moved")
    args = parser.parse_args(argv)
    if args.tokens < 0:
        parser.error("--tokens must be >= 0")
    if args.top_k is not None and args.top_k < 1:
        parser.error("--top-k must be >= 1")
    try:
        text = generate(
            args.target,
            args.prompt,
            args.tokens,
            args.temperature,
            args.top_k,
            args.seed,
            args.data_path,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # RuntimeError: CheckpointError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
