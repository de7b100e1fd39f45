"""LD002: a batch loop that steps an optimizer without clearing its gradients each step."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, DeleteStatement, FixPlan, InsertLine
from loopdoctor.static.flow import Effects, Flow
from loopdoctor.static.model import CallSite, Loop, SemanticModel, call_args, dotted
from loopdoctor.static.walk import walk
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation
from loopdoctor.static import roles


class ZeroGradOutsideBatchLoop(Rule):
    code = "LD002"
    name = "zero-grad-outside-batch-loop"
    summary = "Optimizer stepped every batch while its gradients are not cleared inside the batch loop"
    fix_hint = "call `optimizer.zero_grad()` inside the batch loop, once per optimizer step"
    required_tokens = (BACKWARD_CALL, STEP_CALL)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for loop in function.loops:
                if not flow.is_batch_loop(loop):
                    continue
                effects = flow.loop_effects(loop)
                for optimizer in effects.steps:
                    if self._is_cleared(semantic, loop, effects, optimizer) or function.assigned_in(optimizer, loop, to_a_value=True):
                        # an optimizer built afresh every iteration is a one-off probe
                        continue
                    yield self._violation(semantic, loop, effects, optimizer)

    def _is_cleared(self, semantic: SemanticModel, loop: Loop, effects: Effects, optimizer: str) -> bool:
        if effects.clears_everything or optimizer in effects.clears:
            return True
        sources = parameter_sources(semantic, loop, optimizer)
        for cleared in effects.clears:
            if roles.has_role(semantic, cleared, loop.function, "optimizer"):
                continue
            if sources is None:
                return True  # some model's gradients are cleared; we cannot tell whose
            if any(source == cleared or source.startswith(cleared + ".") for source in sources):
                return True
        return False

    def _violation(self, semantic: SemanticModel, loop: Loop, effects: Effects, optimizer: str) -> Violation:
        misplaced = _misplaced_zero_grad(semantic, loop, optimizer)
        fix = _fix(semantic, loop, effects, optimizer, misplaced)
        if misplaced is not None:
            return Violation(
                misplaced.node,
                f"`{optimizer}.zero_grad()` runs outside the batch loop that calls `backward()` and "
                f"steps `{optimizer}`: gradients of every batch add up into each update",
                fix,
            )
        return Violation(
            effects.backward[0].node,
            f"the batch loop steps `{optimizer}` but never clears its gradients: each `backward()` "
            "adds to the gradients of all earlier batches",
            fix,
        )


def parameter_sources(semantic: SemanticModel, loop: Loop, optimizer: str) -> Optional[list[str]]:
    """Keys of the models whose ``.parameters()`` built the optimizer, when known."""
    role = roles.role_of(semantic, optimizer, loop.function)
    if role is None or not isinstance(role.source, cst.Call):
        return None
    positional, keywords = call_args(role.source)
    params = keywords.get("params") or (positional[0] if positional else None)
    if params is None:
        return None
    sources = [
        dotted(node.func.value)
        for node in walk(params)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
        and node.func.attr.value in ("parameters", "named_parameters") and dotted(node.func.value)
    ]
    return sources or None


def _misplaced_zero_grad(semantic: SemanticModel, loop: Loop, optimizer: str) -> Optional[CallSite]:
    function = loop.function
    candidates = [
        site
        for site in function.calls
        if site.method == "zero_grad"
        and site.receiver is not None
        and semantic.canonical(site.receiver, function) == optimizer
        and not loop.contains(site.order)
    ]
    before = [site for site in candidates if site.order < loop.start]
    if before:
        return max(before, key=lambda s: s.order)
    return candidates[0] if candidates else None


def _fix(semantic: SemanticModel, loop: Loop, effects: Effects, optimizer: str, misplaced: Optional[CallSite]) -> Optional[FixPlan]:
    """Unsafe: clear once per batch, just before the first backward() of the loop (moving a
    misplaced call). It changes training whenever the accumulation was deliberate."""
    backward = next((b for b in effects.backward if b.function is loop.function and loop.contains(b.order)), None)
    if backward is None or loop.function.iterates(optimizer):
        return None  # (`for opt in optimizers`: no single name to clear at the backward)
    operations = [InsertLine(backward.statement, f"{optimizer}.zero_grad()")]
    if misplaced is not None:
        if not _alone_on_its_line(misplaced):
            return None
        operations.append(DeleteStatement(misplaced.statement))
    return FixPlan(UNSAFE, f"clear `{optimizer}`'s gradients inside the batch loop, before `backward()`", tuple(operations))


def _alone_on_its_line(site: CallSite) -> bool:
    statement = site.statement
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and statement.body[0].value is site.node
    )
