"""Third-party noise, turned off where it starts (never a blanket warning filter).

* Lightning's ``💡 Tip: ... try installing [litlogger]`` and its device lines (``GPU available:
  False, used: False``, ``TPU available: ...``) on every ``Trainer``: a ``logging.Filter`` on
  Lightning's own ``rank_zero`` loggers drops those messages and no other (raising their level
  would also hide e.g. "Restoring states from the checkpoint path").
* torch's ``FutureWarning`` "``isinstance(treespec, LeafSpec)`` is deprecated", which Lightning
  triggers on every fit: that one message, filtered by its text.
"""

from __future__ import annotations

import logging
import warnings

_TIP = "try installing [litlogger]"
_DEVICE_LINES = ("GPU available:", "TPU available:", "HPU available:", "IPU available:")


class _DropLitLoggerTip(logging.Filter):
    """Drops the litlogger tip and the device-availability lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return _TIP not in msg and not msg.startswith(_DEVICE_LINES)


def quiet_libraries() -> None:
    """Apply the switches above (idempotent; cheap)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
            logger.addFilter(_DropLitLoggerTip())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning)
