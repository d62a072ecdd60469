"""Third-party noise, turned off where it starts (never with a global warning filter).

* Lightning's ``💡 Tip: ... try installing [litlogger]`` on every ``Trainer``: a
  ``logging.Filter`` on Lightning's own ``rank_zero`` loggers drops that one message (the
  documented way to configure Lightning's console output is its loggers).
* torch's ``FutureWarning`` "``isinstance(treespec, LeafSpec)`` is deprecated": Lightning's
  ``utilities._pytree`` still calls the deprecated ``LeafSpec()`` constructor on every fit and
  validate; its module gets torch's replacement, ``treespec_leaf()`` (the same shared leaf spec).
* ``Checkpoint directory ... exists and is not empty`` on every resume: silenced in
  ``SnapshotCheckpoint`` (a resumed run writes into its own run dir's ``checkpoints/`` by design).
"""

from __future__ import annotations

import logging

_TIP = "try installing [litlogger]"


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TIP not in str(record.msg)


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
