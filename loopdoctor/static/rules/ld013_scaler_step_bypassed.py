"""LD013: gradients scaled by a GradScaler but stepped without it, or a scaler never updated."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow, is_scaled_backward, is_scaler, stepped_optimizer
from loopdoctor.static.model import CallSite, SemanticModel, dotted
from loopdoctor.static.rules.base import STEP_CALL, Rule, Violation


class ScalerStepBypassed(Rule):
    code = "LD013"
    name = "scaler-step-bypassed"
    summary = "After `scaler.scale(loss).backward()`, `optimizer.step()` called directly, or `scaler.update()` missing"
    fix_hint = "step through `scaler.step(optimizer)` and call `scaler.update()` once per iteration"
    required_tokens = (("scale(",), STEP_CALL)

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in model.functions:
            backwards = [s for s in function.calls if is_scaled_backward(model, s)]
            if not backwards:
                continue
            scalers = {dotted(b.node.func.value.func.value) for b in backwards}
            for site in function.calls:
                scaled_before = [b for b in backwards if b.order < site.order and b.loop is site.loop and not b.exclusive_with(site)]
                if not scaled_before:
                    continue
                if site.method == "step" and site.receiver and not is_scaler(model, site.receiver, function) and stepped_optimizer(model, site):
                    yield Violation(site.node, _direct_step_message(model, site, scalers))
                elif site.method == "step" and site.receiver in scalers:
                    updated = any(s.method == "update" and s.receiver == site.receiver for s in function.calls)
                    if not updated:
                        yield Violation(
                            site.node,
                            f"`{site.receiver}.step()` without `{site.receiver}.update()`: the scale never "
                            "adapts, so after one overflow every step is skipped or the scale stays too small",
                        )


def _direct_step_message(model: SemanticModel, site: CallSite, scalers: set) -> str:
    optimizer = stepped_optimizer(model, site)
    through_scaler = any(
        other.method == "step" and other.receiver in scalers and other.order < site.order
        and other.loop is site.loop and not other.exclusive_with(site) and stepped_optimizer(model, other) == optimizer
        for other in site.function.calls
    )
    if through_scaler:  # torchvision's classification reference once did exactly this
        return (
            f"`{site.receiver}.step()` runs again after `scaler.step({site.receiver})` in the same "
            "iteration: every batch updates the weights twice"
        )
    return (
        f"`{site.receiver}.step()` is called directly on gradients scaled by the GradScaler: the "
        "update is the scale (65536 at first) times too large and overflow steps are not skipped"
    )
