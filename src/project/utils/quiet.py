"""Third-party noise, turned off where it starts (never with a global warning filter).

* Lightning's ``💡 Tip: ... try installing [litlogger]`` and its device lines (``GPU available:
  False, used: False``, ``TPU available: ...``, ``HPU available: ...``) on every ``Trainer``: a
  ``logging.Filter`` on Lightning's own ``rank_zero`` loggers drops those messages and no other
  (the documented way to configure Lightning's console output is its loggers; raising their level
  would also hide e.g. "Restoring states from the checkpoint path"). The device a run used is in
  its ``resolved_config.yaml`` (``trainer.accelerator``, ``trainer.devices``).
* torch's ``FutureWarning`` "``isinstance(treespec, LeafSpec)`` is deprecated": Lightning's
  ``utilities._pytree`` still calls the deprecated ``LeafSpec()`` constructor on every fit and
  validate; its module gets torch's replacement, ``treespec_leaf()`` (the same shared leaf spec).
* ``Checkpoint directory ... exists and is not empty`` on every resume: silenced in
  ``SnapshotCheckpoint`` (a resumed run writes into its own run dir's ``checkpoints/`` by design).
"""

from __future__ import annotations

import logging

_TIP = "try installing [litlogger]"
_DEVICE_LINES = ("GPU available:", "TPU available:", "HPU available:", "IPU available:")


class _DropLitLoggerTip(logging.Filter):
    """Drops the litlogger tip and the device-availability lines (the name is kept: a filter
    already installed by an earlier import is recognised by its class)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return _TIP not in msg and not msg.startswith(_DEVICE_LINES)


def quiet_libraries() -> None:
    """Apply the switches above (idempotent; cheap)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
            logger.addFilter(_DropLitLoggerTip())
    try:
        from lightning.pytorch.utilities import _pytree as lightning_pytree
        from torch.utils._pytree import treespec_leaf
    except ImportError:  # other versions: nothing to fix
        return
    if getattr(lightning_pytree, "LeafSpec", None) is not treespec_leaf:
        lightning_pytree.LeafSpec = treespec_leaf  # type: ignore[assignment,misc]
