"""LD005: gradients clipped while still multiplied by the GradScaler's scale."""

from __future__ import annotations

from typing import Iterator, Optional

from loopdoctor.static.fixes import SAFE, FixPlan, InsertLine
from loopdoctor.static.flow import Flow, is_scaler
from loopdoctor.static.model import CallSite, SemanticModel
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static import roles

CLIP_FUNCTIONS = ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm")


class ClipBeforeUnscale(Rule):
    code = "LD005"
    name = "clip-before-unscale"
    summary = "Gradient clipping applied to scaled gradients, before `scaler.unscale_(optimizer)`"
    fix_hint = "call `scaler.unscale_(optimizer)` after backward and before clipping"
    required_tokens = (("clip_grad",), ("scale",))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            backwards = [site for site in function.calls if flow.scales_backward(site)]
            if not backwards:
                yield from self._clipped_before_scaler_step(semantic, flow, function.calls)
                continue
            for clip in function.calls:
                if not _clips(semantic, flow, clip):
                    continue
                # In the clip's own loop, or in a loop inside it (gradient accumulation's micro-steps).
                scaled = [b for b in backwards if b.order < clip.order and _within(b.loop, clip.loop)]
                if not scaled:
                    continue
                backward = max(scaled, key=lambda s: s.order)
                if not self._unscaled_between(semantic, flow, function.calls, backward.order, clip.order):
                    yield Violation(
                        clip.node,
                        "gradients are clipped while still multiplied by the GradScaler's scale "
                        "(`scaler.scale(loss).backward()` above): the threshold applies to scaled "
                        "values, so clipping is far too strong or does nothing",
                        _fix(semantic, flow, function.calls, backward, clip),
                    )

    def _clipped_before_scaler_step(self, semantic: SemanticModel, flow: Flow, calls: list[CallSite]) -> Iterator[Violation]:
        """A step helper whose backward ran in its caller (open_clip's `_finish_eager_train_step`):
        `scaler.step(optimizer)` after the clip says the gradients are scaled, and no
        `unscale_` in this function before the clip unscaled them."""
        for clip in calls:
            if not _clips(semantic, flow, clip):
                continue
            steps = [s for s in calls if s.order > clip.order and s.method == "step" and s.node.args
                     and is_scaler(semantic, s.receiver, s.function) and not s.exclusive_with(clip)]
            if steps and not self._unscaled_between(semantic, flow, calls, -1, clip.order):
                step = steps[0]
                line = f"{step.receiver}.unscale_({semantic.module.code_for_node(step.node.args[0].value)})"
                yield Violation(
                    clip.node,
                    f"gradients are clipped while still multiplied by the GradScaler's scale (`{step.receiver}.step(...)` "
                    "below steps on scaled gradients, and nothing unscales them before the clip): the threshold "
                    "applies to scaled values, so clipping is far too strong or does nothing",
                    FixPlan(SAFE, f"insert `{line}` before clipping", (InsertLine(clip.statement, line),)),
                )
                return

    @staticmethod
    def _unscaled_between(semantic: SemanticModel, flow: Flow, calls: list[CallSite], start: int, end: int) -> bool:
        for site in calls:
            if not start < site.order < end:
                continue
            if site.method == "unscale_" or (site.method == "step" and is_scaler(semantic, site.receiver, site.function)):
                return True  # scaler.step() unscales the gradients too
            if any(flow.function_effects(callee).unscales for callee in semantic.callees(site)):
                return True
        return False


def _clips(semantic: SemanticModel, flow: Flow, site: CallSite) -> bool:
    """torch's clipping functions, or a project's own function whose name says so (timm's
    ``dispatch_clip_grad``, ``utils.clip_gradients``), unless it is of this file and unscales.
    Methods (``accelerator.clip_grad_norm_``, which unscales itself) are not functions."""
    if roles.is_torch_name(semantic, site.callee, *CLIP_FUNCTIONS):
        return True
    last = (site.callee or "").rsplit(".", 1)[-1]
    is_function = site.receiver is None or site.receiver.split(".")[0] in semantic.imports
    if "clip_grad" not in last or (site.callee or "").startswith("torch.") or not is_function:
        return False
    return not any(flow.function_effects(callee).unscales for callee in semantic.callees(site))


def _within(inner, outer) -> bool:
    """Is loop ``inner`` the loop ``outer``, or inside it (``outer`` None: the function's body)?"""
    return inner is outer or outer is None or outer.encloses(inner)


def _fix(semantic: SemanticModel, flow: Flow, calls: list[CallSite], backward: CallSite, clip: CallSite) -> Optional[FixPlan]:
    """Insert ``scaler.unscale_(optimizer)`` before the clip, naming the optimizer that the
    scaler steps next; no fix when that is not clear."""
    scaler = flow.backward_scaler(backward)
    steps = [s for s in calls if s.order > clip.order and s.method == "step" and s.receiver == scaler and s.node.args]
    if not steps or scaler is None:
        return None
    optimizer = semantic.module.code_for_node(steps[0].node.args[0].value)
    line = f"{scaler}.unscale_({optimizer})"
    # Two clips after one backward must not both get an unscale_: it may run once per step.
    return FixPlan(SAFE, f"insert `{line}` before clipping", (InsertLine(clip.statement, line),), group=f"LD005:{backward.order}")
