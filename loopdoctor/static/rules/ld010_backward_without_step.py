"""LD010: a loop that backpropagates but never steps, or steps before backpropagating."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow, is_backward, stepped_optimizer
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation


class BackwardWithoutStep(Rule):
    code = "LD010"
    required_tokens = (BACKWARD_CALL, ("zero_grad", *STEP_CALL))

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in model.functions:
            for loop in function.loops:
                direct = [s for s in function.calls if s.loop is loop]
                backwards = [s for s in direct if is_backward(s)]
                if not backwards:
                    continue
                steps = [s for s in direct if stepped_optimizer(model, s)]
                if steps and min(s.order for s in steps) < min(b.order for b in backwards):
                    first = min(steps, key=lambda s: s.order)
                    if not any(is_backward(s) and s.order < loop.start for s in function.calls):
                        yield Violation(
                            first.node,
                            "the optimizer steps before `backward()` in this iteration: each update uses "
                            "the previous batch's gradients (and the first one uses none)",
                        )
                    continue
                cleared = {model.canonical(s.receiver, function) for s in direct if s.method == "zero_grad" and s.receiver}
                optimizers = {o for o in cleared if model.has_role(o, function, "optimizer")}
                stepped_anywhere = {stepped_optimizer(model, s) for s in function.calls} | set(flow.function_effects(function).steps)
                for optimizer in sorted(optimizers - stepped_anywhere):
                    yield Violation(
                        backwards[0].node,
                        f"this loop clears `{optimizer}` and calls `backward()` but `{optimizer}` is never "
                        "stepped: the gradients are computed and thrown away, nothing learns",
                    )
