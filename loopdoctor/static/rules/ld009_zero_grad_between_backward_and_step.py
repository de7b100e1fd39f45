"""LD009: gradients cleared between ``backward()`` and ``step()`` of the same iteration."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow, is_backward, stepped_optimizer
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation


class ZeroGradBetweenBackwardAndStep(Rule):
    code = "LD009"
    name = "zero-grad-between-backward-and-step"
    summary = "Gradients cleared after `backward()` and before `step()`: the update uses zeros"
    fix_hint = "clear the gradients before `backward()` (or after `step()`)"
    required_tokens = (("zero_grad",), BACKWARD_CALL, STEP_CALL)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            calls = function.calls
            for clear in calls:
                if clear.method != "zero_grad" or clear.receiver is None:
                    continue
                cleared = semantic.canonical(clear.receiver, function)
                same_iteration = [s for s in calls if s.loop is clear.loop]
                backward_before = [s for s in same_iteration if is_backward(s) and s.order < clear.order]
                step_after = [s for s in same_iteration if s.order > clear.order and stepped_optimizer(semantic, s) == cleared]
                if not backward_before or not step_after:
                    continue
                last_backward = max(b.order for b in backward_before)
                step = min(step_after, key=lambda s: s.order)
                if any(is_backward(s) and clear.order < s.order < step.order for s in same_iteration):
                    continue  # a new backward refills the gradients before the step
                if any(stepped_optimizer(semantic, s) == cleared and last_backward < s.order < clear.order for s in same_iteration):
                    continue  # stepped already, then cleared for the next round
                yield Violation(
                    clear.node,
                    f"`{clear.receiver}.zero_grad()` runs after `backward()` and before `step()`: the "
                    "gradients just computed are erased and the step updates with zeros",
                )
