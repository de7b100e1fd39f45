"""The per-run engine of the loop checks: events in, findings out.

Hook sources (``sources.py``) emit events; the recorder hands each to the run's ``LoopState``
first and then to every check that subscribes to it (a check subscribes by defining
``on_<event>``). A check reports through the recorder, which keeps one finding per code and
call site, stamps it with the step, and warns (``LoopWarning``) when asked to.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Optional

from loopdoctor.runtime.checks import CHECKS, Check
from loopdoctor.runtime.findings import LoopFinding, Site
from loopdoctor.runtime.loop_state import LoopState

EVENTS = (
    "optimizer_created", "root_forward", "dropout", "loss", "backward", "zero_grad", "module_zero_grad",
    "pre_step", "post_step", "scaler_scale", "scaler_unscale", "scaler_step_begin", "scaler_step_end",
    "scaler_update", "clip", "scheduler_step", "load_state_dict", "close",
)


class LoopWarning(UserWarning):
    """A loop mistake seen while the loop ran; filter it like any warning:
    ``warnings.simplefilter("ignore", loopdoctor.LoopWarning)``, or pytest's ``-W ignore::loopdoctor.LoopWarning``."""


class Recorder:
    def __init__(self, findings: list, codes: Iterable[str], *, warn: bool = False, rank: Optional[int] = None):
        self.findings = findings  # the watch's own list: LD200's diagnoses go there too
        self.state = LoopState()
        self.warn = warn
        self.rank = rank
        self.internal_errors: list[str] = []
        self._reported: set[tuple] = set()
        enabled = set(codes)
        self.checks: list[Check] = [cls(self) for cls in CHECKS if cls.code in enabled]
        self.handlers: dict[str, list] = {}  # event -> the state's and the checks' `on_<event>` methods
        for event in EVENTS:
            subscribers = [self.state, *self.checks]
            self.handlers[event] = [getattr(s, f"on_{event}") for s in subscribers if hasattr(s, f"on_{event}")]

    def emit(self, event: str, *args: Any) -> None:
        for handler in self.handlers[event]:
            try:
                handler(*args)
            except Exception as error:  # a check must never break the user's training
                self.internal_error(handler, error)

    def internal_error(self, handler: Any, error: Exception) -> None:
        owner = type(getattr(handler, "__self__", handler)).__name__
        problem = f"loopdoctor: internal error in {owner}: {type(error).__name__}: {error} (that call of the check is skipped; training goes on)"
        if problem not in self.internal_errors:
            self.internal_errors.append(problem)
            warnings.warn(problem, RuntimeWarning, stacklevel=4)

    def report(self, check: Check, message: str, site: Site, *, help: Optional[str] = None, related: Iterable[str] = (),
               step: Optional[int] = None) -> Optional[LoopFinding]:
        """One finding per code and call site: a mistake inside the loop is reported at its first
        step, not at every step after it."""
        key = (check.code, site.filename, site.line)
        if key in self._reported:
            return None
        self._reported.add(key)
        finding = LoopFinding(
            code=check.code, name=check.name, message=message, filename=site.filename, line=site.line,
            step=self.state.step if step is None else step, help=help or check.fix_hint, rank=self.rank, related=list(related),
        )
        self.findings.append(finding)
        if self.warn:
            warnings.warn_explicit(finding.headline, LoopWarning, site.filename, site.line)
        return finding
