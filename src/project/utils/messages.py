"""A constructor's error as the one line a config error is (the error path only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_line(node_key: str, spec: Any, exc: BaseException) -> str:
    """``model.optimizer.lr=-1 is invalid: allowed what AdamW accepts (<its message>)``."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    values = {k: v for k, v in (spec if isinstance(spec, Mapping) else {}).items() if k[0] != "_"}
    named = [k for k in values if k in message] or [
        k for k, v in values.items() if isinstance(v, int | float) and str(v) in message
    ]
    name = str(spec.get("_target_", "it")) if isinstance(spec, Mapping) else "it"
    short = name.rpartition(".")[2]
    if named:
        key = named[0]
        return (
            f"{node_key}.{key}={values[key]!r} is invalid: allowed what {short} accepts ({message})"
        )
    return f"{node_key}: {short}: {message}"
