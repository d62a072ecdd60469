"""CSV logger that survives a resume (``logger=csv``)."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that keeps ``metrics.csv`` when a run resumes in its own dir.

    Lightning's writer deletes an existing ``metrics.csv`` when it starts; this one puts the old rows
    back and appends (a new column rewrites the header, keeping every row). Lightning's warning at
    that point ("Experiment logs directory ... exists and is not empty. Previous log files ... will
    be deleted") is untrue here and is not shown.
    """

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            path = Path(self.log_dir) / "metrics.csv"
            kept = path.read_bytes() if path.is_file() else None
            with warnings.catch_warnings():  # this one call only: its claim is false here
                warnings.filterwarnings("ignore", message="Experiment logs directory .* exists")
                writer = CSVLogger.experiment.fget(self)  # type: ignore[attr-defined]
            if kept and hasattr(writer, "metrics_keys"):
                path.write_bytes(kept)
                header = next(csv.reader(io.StringIO(kept.decode())), [])
                writer.metrics_keys = sorted(set(header))
        return CSVLogger.experiment.fget(self)  # type: ignore[attr-defined]
