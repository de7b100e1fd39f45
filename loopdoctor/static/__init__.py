"""The static half: reads training code with libcst and never imports torch.

``linter`` is its entry point (lint paths or bytes, fix them); the rest are its parts. The names
below load on first use, so that importing a part (the rule registry, from config.py) stays cheap
and free of import circles.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CheckOptions": "linter", "Report": "linter", "lint_bytes": "linter", "lint_paths": "linter",
    "FileResult": "findings", "UnknownCodeError": "rules", "select_rules": "rules",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"loopdoctor.static.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'loopdoctor.static' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
