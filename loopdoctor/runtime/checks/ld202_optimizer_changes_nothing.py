"""LD202: an optimizer whose steps change none of its parameters, step after step.

A step changes nothing when none of the optimizer's parameters has a gradient (it holds
parameters the model no longer uses: a model rebuilt after the optimizer; or only frozen ones)
or when every group's learning rate is 0. After ``NO_OP_STEPS`` such steps in a row the optimizer
is reported; an optimizer over frozen parameters only is reported when the run ends still
frozen, since freezing is often lifted later. (A warmup from learning rate 0 is one such step.)
"""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

NO_OP_STEPS = 8


class OptimizerChangesNothing(Check):
    code = "LD202"
    name = "optimizer-changes-nothing"
    summary = "An optimizer's steps change none of its parameters for several steps in a row"
    fix_hint = "build the optimizer over the parameters the model uses, after the model is final, with a learning rate above 0"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._idle: dict[int, tuple] = {}  # id(optimizer) -> (steps in a row, reason, site, optimizer name)

    def on_pre_step(self, optimizer, closure: bool) -> None:
        key = id(optimizer)
        reason = None if closure else _no_op(optimizer)
        if reason is None:
            self._idle.pop(key, None)
            return
        count, _, site, name = self._idle.get(key, (0, None, None, type(optimizer).__name__))
        count += 1
        site = site or user_site()
        self._idle[key] = (count, reason, site, name)
        if count == NO_OP_STEPS and reason != FROZEN:
            self._report(count, reason, site, name)

    def on_close(self) -> None:
        for count, reason, site, name in self._idle.values():
            if count >= NO_OP_STEPS and reason == FROZEN:
                self._report(count, reason, site, name)

    def _report(self, count: int, reason: str, site, name: str) -> None:
        self.report(f"`{name}.step()` changed none of its parameters in {count} steps in a row: {reason}", site)


FROZEN = "every parameter it holds is frozen (`requires_grad=False`)"
UNUSED = "none of its parameters has a gradient: the model being trained does not use them (was it rebuilt after the optimizer?)"
ZERO_LR = "the learning rate of every parameter group is 0"


def _no_op(optimizer) -> "str | None":
    groups = optimizer.param_groups
    # (Every step: stop at the first gradient, usually the first parameter's.)
    if any(p.grad is not None for group in groups for p in group["params"]):
        return ZERO_LR if all(_zero(group.get("lr")) for group in groups) else None
    params = [p for group in groups for p in group["params"]]
    if not params:
        return None
    return FROZEN if not any(p.requires_grad for p in params) else UNUSED


def _zero(lr) -> bool:
    try:
        return float(lr) == 0.0
    except (TypeError, ValueError):
        return False
