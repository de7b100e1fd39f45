"""LD010 at run time: ``backward()`` again and again while no optimizer ever steps.

Reported after ``BACKWARDS_BEFORE_REPORT`` backward passes without any step, or when the run
ends after ``BACKWARDS_AT_END`` of them, provided an optimizer exists that holds parameters those
passes gave gradients to: a script that only reads gradients (saliency, Fisher information) has
no such optimizer, or steps it elsewhere in the run.
"""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

BACKWARDS_AT_END = 8  # more than any sensible accumulation in a short run
BACKWARDS_BEFORE_REPORT = 64  # more than any accumulation scheme


class BackwardWithoutStep(Check):
    code = "LD010"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._site = None
        self._idle_optimizer = None  # the name of an optimizer holding parameters with gradients

    def on_backward(self, roots) -> None:
        state = self.state
        if state.attempts:  # (a step GradScaler skipped was still asked for)
            return
        if self._site is None:
            self._site = user_site()
        if self._idle_optimizer is None:
            self._idle_optimizer = self._with_gradients(self.state.live_optimizers())
        if state.backwards == BACKWARDS_BEFORE_REPORT and self._idle_optimizer:
            self._report()

    def on_zero_grad(self, optimizer) -> None:
        if not self.state.attempts and self._idle_optimizer is None:
            self._idle_optimizer = self._with_gradients([optimizer])  # (the gradients it is about to clear)

    def on_close(self) -> None:
        if not self.state.attempts and self.state.backwards >= BACKWARDS_AT_END and self._idle_optimizer:
            self._report()

    @staticmethod
    def _with_gradients(optimizers):
        for optimizer in optimizers:
            if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                return type(optimizer).__name__
        return None

    def _report(self) -> None:
        self.report(
            f"`backward()` ran {self.state.backwards} times and no optimizer has stepped: `{self._idle_optimizer}` "
            "holds parameters with gradients but the loop never calls its `step()`, so nothing is learned",
            self._site,
        )
