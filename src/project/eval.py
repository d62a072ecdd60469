"""Evaluate a run or a checkpoint: loss and accuracy per split.

    uv run python -m project.eval outputs/2025-01-01/12-00-00             # its last.ckpt
    uv run python -m project.eval outputs/.../checkpoints/epoch_000500.ckpt
    uv run python -m project.eval <run dir> --json                         # machine-readable

Like lightning-hydra-template's ``eval.py``: the task and the LightningModule are rebuilt from the
run's ``resolved_config.yaml`` (any task, any net), the checkpoint's weights are loaded (safely:
``weights_only=True``), and Lightning's ``Trainer.validate`` runs the module's own loss over each
split. Prints ``split  loss  acc  n`` rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def resolve(target: str | Path) -> tuple[Path, Path]:
    """``(checkpoint, run dir)`` for a run dir (its ``last.ckpt``) or a checkpoint inside one."""
    target = Path(target)
    if target.is_dir():
        run_dir, ckpt = target, target / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            from project.checkpoint import snapshot_paths

            snapshots = snapshot_paths(target / "checkpoints")  # old epoch=N.ckpt names too
            if not snapshots:
                raise FileNotFoundError(f"{target} has no checkpoints/last.ckpt or snapshot")
            ckpt = snapshots[-1][1]
        return ckpt, run_dir
    if not target.exists():
        raise FileNotFoundError(f"{target} does not exist; allowed: a run dir or a checkpoint")
    from project.checkpoint import read_checkpoint

    read_checkpoint(target)  # an empty, text or truncated file says so first
    run_dir = target.absolute().parent.parent
    if not (run_dir / "resolved_config.yaml").is_file():
        raise FileNotFoundError(
            f"{target}: no resolved_config.yaml two levels up (expected <run dir>/checkpoints/x.ckpt)"
        )
    return target, run_dir


def evaluate(target: str | Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Any]:
    """``{split: {"loss", "acc"}}`` plus ``checkpoint`` and ``epoch`` (completed epochs) for a run
    dir or checkpoint."""
    import lightning as L

    from project.checkpoint import completed_epochs, read_checkpoint
    from project.stored import build_module, build_task, run_config

    ckpt_path, run_dir = resolve(target)
    ckpt = read_checkpoint(ckpt_path)
    config = run_config(run_dir)
    datamodule, module = build_task(run_dir, config), build_module(run_dir, config)
    module.load_state_dict(ckpt["state_dict"])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    datamodule.setup("validate")
    loaders = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader}
    # completed epochs, as in the summary ("finished after 5 epochs" -> "epoch": 5)
    results: dict[str, Any] = {"checkpoint": str(ckpt_path), "epoch": completed_epochs(ckpt)}
    for split in splits:
        (metrics,) = trainer.validate(module, dataloaders=loaders[split](), verbose=False)
        results[split] = {"loss": metrics["val/loss"], "acc": metrics["val/acc"]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m project.eval", description=__doc__)
    parser.add_argument("target", help="a run dir or a checkpoint inside one")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    from project.checkpoint import CheckpointError
    from project.stored import StoredDataError

    try:
        results = evaluate(args.target)
    except (FileNotFoundError, ValueError, CheckpointError, StoredDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"checkpoint: {results['checkpoint']} (after {results['epoch']} epochs)")
    print(f"{'split':<6} {'loss':>10} {'acc':>8}")
    for split in ("train", "val"):
        row = results[split]
        print(f"{split:<6} {row['loss']:>10.4f} {row['acc']:>8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
