"""LD013: gradients scaled by a GradScaler but stepped without it, or a scaler never updated."""

from __future__ import annotations

from typing import Iterator, Optional

from loopdoctor.static.fixes import DISPLAY_ONLY, FixPlan, Replace
from loopdoctor.static.flow import Flow, is_scaler, stepped_optimizer
from loopdoctor.static.model import CallSite, SemanticModel
from loopdoctor.static.rules.base import STEP_CALL, Rule, Violation


class ScalerStepBypassed(Rule):
    code = "LD013"
    name = "scaler-step-bypassed"
    summary = "After `scaler.scale(loss).backward()`, `optimizer.step()` called directly, or `scaler.update()` missing"
    fix_hint = "step through `scaler.step(optimizer)` and call `scaler.update()` once per iteration"
    required_tokens = (("scale(",), STEP_CALL)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            backwards = [s for s in function.calls if flow.scales_backward(s, surely=True)]
            if not backwards:
                continue
            scalers = {flow.backward_scaler(b) for b in backwards}
            for site in function.calls:
                scaled_before = [b for b in backwards if b.order < site.order and b.loop is site.loop and not b.exclusive_with(site)]
                if not scaled_before:
                    continue
                if site.method == "step" and site.receiver and not is_scaler(semantic, site.receiver, function) and stepped_optimizer(semantic, site):
                    yield _direct_step(semantic, site, scalers)
                elif site.method == "step" and site.receiver in scalers:
                    updated = any(s.method == "update" and s.receiver == site.receiver for s in function.calls)
                    if not updated:
                        yield Violation(
                            site.node,
                            f"`{site.receiver}.step()` without `{site.receiver}.update()`: the scale never "
                            "adapts, so after one overflow every step is skipped or the scale stays too small",
                        )


def _direct_step(semantic: SemanticModel, site: CallSite, scalers: set) -> Violation:
    optimizer = stepped_optimizer(semantic, site)
    through_scaler = any(
        other.method == "step" and other.receiver in scalers and other.order < site.order
        and other.loop is site.loop and not other.exclusive_with(site) and stepped_optimizer(semantic, other) == optimizer
        for other in site.function.calls
    )
    if through_scaler:  # torchvision's classification reference once did exactly this
        return Violation(
            site.node,
            f"`{site.receiver}.step()` runs again after `scaler.step({site.receiver})` in the same "
            "iteration: every batch updates the weights twice",
        )
    return Violation(
        site.node,
        f"`{site.receiver}.step()` is called directly on gradients scaled by the GradScaler: the "
        "update is the scale (65536 at first) times too large and overflow steps are not skipped",
        _step_through_scaler(site, scalers),
    )


def _step_through_scaler(site: CallSite, scalers: set) -> Optional[FixPlan]:
    """Display only: where ``scaler.update()`` belongs (once per iteration, after every scaler
    step) is for the author to see, and a loop may scale one loss and step several optimizers."""
    if len(scalers) != 1 or None in scalers or site.node.args:
        return None
    scaler = next(iter(scalers))
    return FixPlan(
        DISPLAY_ONLY,
        f"step through `{scaler}.step({site.receiver})` and call `{scaler}.update()` once per iteration",
        (Replace(site.node, f"{scaler}.step({site.receiver})"),),
    )
