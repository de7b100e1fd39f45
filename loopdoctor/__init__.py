"""loopdoctor: find the mistakes in PyTorch training loops.

The static checker never imports torch. The runtime names (``watch``, ``NonFiniteError``, ...)
import it on first use only.
"""

from __future__ import annotations

__version__ = "0.1.0"

_RUNTIME_NAMES = {"watch", "Watch", "NonFiniteError", "Diagnosis", "LoopFinding", "LoopWarning"}


def __getattr__(name: str):
    if name in _RUNTIME_NAMES:
        from loopdoctor import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'loopdoctor' has no attribute {name!r}")
