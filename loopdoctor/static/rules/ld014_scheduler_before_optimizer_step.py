"""LD014: the learning-rate scheduler stepped before the optimizer in the same iteration."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow, stepped_optimizer
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import STEP_CALL, Rule, Violation
from loopdoctor.static import roles


class SchedulerBeforeOptimizerStep(Rule):
    code = "LD014"
    name = "scheduler-before-optimizer-step"
    summary = "`lr_scheduler.step()` before `optimizer.step()` in the same iteration"
    fix_hint = "step the scheduler after the optimizer"
    required_tokens = (STEP_CALL, ("sched", "lr_", "LR"))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for site in function.calls:
                if site.method != "step" or not roles.has_role(semantic, site.receiver, function, "scheduler"):
                    continue
                loop = site.loop
                if loop is None:
                    continue
                steps = [s.order for s in function.calls if loop.contains(s.order) and stepped_optimizer(semantic, s)]
                if steps and min(steps) > site.order:
                    yield Violation(
                        site.node,
                        f"`{site.receiver}.step()` runs before the optimizer steps in this iteration: the "
                        "first learning rate of the schedule is skipped (PyTorch warns about this order)",
                    )
