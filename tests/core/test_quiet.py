"""Third-party noise is off, through the libraries' own switches: the litlogger tip, torch's
``LeafSpec`` deprecation from Lightning's ``_pytree``, and the non-empty checkpoint dir warning
on resume."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import pytest

import project.lit_module  # noqa: F401  (applies the switches, as every command does)
from project.callbacks.checkpoints import LastCheckpoint


def test_no_litlogger_tip(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.INFO):
        L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    assert "litlogger" not in caplog.text


def test_no_pytree_deprecation_warning() -> None:
    from lightning.pytorch.utilities.combined_loader import CombinedLoader

    from project.utils.quiet import quiet_libraries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning shown, then the template's switches
        quiet_libraries()
        CombinedLoader({"a": [1, 2]}, "max_size_cycle")
        warnings.warn("an unrelated FutureWarning", FutureWarning, stacklevel=1)
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    assert [w for w in caught if "unrelated" in str(w.message)]  # only that one message


def test_no_non_empty_checkpoint_dir_warning_on_resume(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"x")
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    callback = LastCheckpoint(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.setup(trainer, L.LightningModule(), "fit")
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]
