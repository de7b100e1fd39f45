"""LD014 at run time: a learning-rate scheduler stepped before its optimizer ever was."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class SchedulerBeforeOptimizer(Check):
    code = "LD014"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._seen: set[int] = set()  # schedulers whose first step was looked at

    def on_scheduler_step(self, scheduler) -> None:
        optimizer = getattr(scheduler, "optimizer", None)
        if optimizer is None or id(scheduler) in self._seen:
            return
        self._seen.add(id(scheduler))
        inner = getattr(optimizer, "optimizer", None)  # a wrapper's optimizer (accelerate, ZeRO)
        attempts = self.state.attempts
        if attempts.get(id(optimizer), 0) or (inner is not None and attempts.get(id(inner), 0)):
            return
        self.report(
            f"`{type(scheduler).__name__}.step()` runs before its optimizer's first `step()`: the first value of the "
            "schedule is skipped (warmup starts one step late, every decay comes one step early)",
            user_site(),
        )
