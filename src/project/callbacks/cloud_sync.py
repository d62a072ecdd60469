"""Cloud sync of the run dir with rclone (``$RCLONE_DEST``); see ``project.sync``.

Periodic sync (``every_n_epochs > 0``): on rank zero, at the end of every N-th epoch a
``rclone copy`` is started in the background; training never waits for it. If the previous copy
is still running the epoch's sync is skipped. A failed background copy gives one warning; the final
copy at the end of fit copies everything anyway.

Final copy (``on_fit_end``, rank zero, after ``RunSummary`` wrote ``summary.json``, so the copy
carries it): the result goes into ``summary.json`` (``sync``), which is then copied again. A failed
copy never fails the run: one warning on stderr, the local run dir stays complete, and the
summary shows ``sync: FAILED (rclone exit N) ...`` with rclone's error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from project.summary import read_summary
from project.sync import ENV_VAR, BackgroundCopy, SyncResult, copy_run_dir


class CloudSync(Callback):
    """Copies ``run_dir`` to ``dest/<run name>/`` (default ``dest``: ``$RCLONE_DEST``)."""

    end_of_fit_order = 2  # last: its copy carries the summary.json RunSummary wrote

    def __init__(self, run_dir: str, dest: str | None = None, every_n_epochs: int = 0) -> None:
        from project.callbacks.checkpoints import require_int

        require_int("every_n_epochs", every_n_epochs, 0, " (0 = only after fit)")
        self.run_dir = Path(run_dir)
        self.dest = dest if dest is not None else (os.environ.get(ENV_VAR) or None)
        self.every_n_epochs = every_n_epochs
        self._bg: BackgroundCopy | None = None
        self._warned = False
        self.background_syncs = 0  # started
        self.result: SyncResult | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.dest)

    def _collect(self) -> None:
        if self._bg is None:
            return
        result = self._bg.poll()
        if result is None:
            return
        self._bg = None
        if not result.ok and not self._warned:
            self._warned = True
            print(f"warning: background {result.line()}", file=sys.stderr)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.enabled or not self.every_n_epochs or not trainer.is_global_zero:
            return
        self._collect()
        done = trainer.current_epoch + 1
        if done % self.every_n_epochs == 0 and self._bg is None:
            self._bg = BackgroundCopy(self.run_dir, str(self.dest))
            self.background_syncs += 1

    def final_sync(self) -> SyncResult | None:
        """Stop a background copy in flight and copy the whole run dir (blocking). None if off."""
        if self._bg is not None:
            self._bg.stop()
            self._bg = None
        if not self.enabled:
            return None
        self.result = copy_run_dir(self.run_dir, str(self.dest))
        return self.result

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero or (result := self.final_sync()) is None:
            return
        record = read_summary(self.run_dir)
        if record is not None:
            record.sync = {
                "ok": result.ok,
                "dest": result.dest,
                "returncode": result.returncode,
                "error": result.error,
                "line": result.line(),
            }
            record.write(self.run_dir)
            if result.ok:  # carry the final summary.json too (only that file changed)
                self.final_sync()
        if not result.ok:
            print(
                f"warning: cloud sync failed; the local run is complete in {self.run_dir}. "
                f"{result.line()}",
                file=sys.stderr,
            )

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self._bg is not None:
            self._bg.stop()
            self._bg = None
