"""Secrets never reach a run's files: environment values that look like API keys are redacted."""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|_PASS$|CREDENTIAL)", re.I)
REDACTED = "<redacted>"  # a plain YAML scalar (``***`` would read as an alias)


def secret_values() -> list[str]:
    """Values of environment variables that look like secrets (``*_API_KEY``, ``*TOKEN*``, ...)."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def redact_secrets(text: str) -> str:
    """``text`` with every secret environment value replaced by ``<redacted>``."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return text
