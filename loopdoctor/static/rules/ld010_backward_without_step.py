"""LD010: a loop that backpropagates but never steps, or steps before backpropagating.

Two kinds of loop clear and backpropagate without stepping on purpose, and are left alone: loops
that read ``.grad`` (importance estimation for EWC, MAS or GEM, Fisher information, saliency),
and loops that call a method this file does not define whose name says it steps or updates
(``self.optimizer_step()`` from a base class in another file, ``step_and_update_lr()``).
"""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.flow import Flow, is_backward, stepped_optimizer
from loopdoctor.static.model import CallSite, Function, Loop, SemanticModel, words_of
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation
from loopdoctor.static.walk import walk
from loopdoctor.static import roles

STEP_WORDS = frozenset({"step", "update"})
# Roles whose step or update is not an optimizer step.
NOT_OPTIMIZERS = ("scheduler", "scaler", "loader", "loss", "model")
# ``p.grad.zero_()`` and the like clear gradients; they do not read them.
CLEARING_METHODS = frozenset({"zero_", "detach_", "requires_grad_"})


class BackwardWithoutStep(Rule):
    code = "LD010"
    name = "backward-without-step"
    summary = "A loop that clears and backpropagates but never steps its optimizer, or steps before `backward()`"
    fix_hint = "call `optimizer.step()` after `backward()` in each iteration"
    required_tokens = (BACKWARD_CALL, ("zero_grad", *STEP_CALL))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for loop in function.loops:
                direct = [s for s in function.calls if s.loop is loop]
                backwards = [s for s in direct if is_backward(s)]
                if not backwards:
                    continue
                steps = [s for s in direct if stepped_optimizer(semantic, s)]
                if steps and min(s.order for s in steps) < min(b.order for b in backwards):
                    first = min(steps, key=lambda s: s.order)
                    if not any(is_backward(s) and s.order < loop.start for s in function.calls):
                        yield Violation(
                            first.node,
                            "the optimizer steps before `backward()` in this iteration: each update uses "
                            "the previous batch's gradients (and the first one uses none)",
                        )
                    continue
                cleared = {semantic.canonical(s.receiver, function) for s in direct if s.method == "zero_grad" and s.receiver}
                optimizers = {o for o in cleared if roles.has_role(semantic, o, function, "optimizer")}
                if not optimizers or _reads_gradients(loop) or any(_may_step(semantic, s, function) for s in function.calls):
                    continue
                stepped_anywhere = {stepped_optimizer(semantic, s) for s in function.calls} | set(flow.function_effects(function).steps)
                for optimizer in sorted(optimizers - stepped_anywhere):
                    yield Violation(
                        backwards[0].node,
                        f"this loop clears `{optimizer}` and calls `backward()` but `{optimizer}` is never "
                        "stepped: the gradients are computed and thrown away, nothing learns",
                    )


def _may_step(semantic: SemanticModel, site: CallSite, function: Function) -> bool:
    """A call of something this file does not define, whose name says it steps or updates."""
    name = site.method or (site.callee or "").rsplit(".", 1)[-1]
    if not name or not (words_of(name) & STEP_WORDS) or name in semantic.by_name:
        return False
    return site.receiver is None or not any(roles.has_role(semantic, site.receiver, function, role) for role in NOT_OPTIMIZERS)


def _reads_gradients(loop: Loop) -> bool:
    """Does the loop read a ``.grad`` (not assign it, not clear it in place)?"""
    assigned, clearing, grads = set(), set(), []
    for node in walk(loop.node):
        if isinstance(node, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign)):
            assigned.add(id(node.target))
        elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in CLEARING_METHODS:
            inner = node.func.value
            if isinstance(inner, cst.Attribute) and inner.attr.value == "data":
                inner = inner.value  # p.grad.data.zero_()
            clearing.add(id(inner))
        elif isinstance(node, cst.Attribute) and node.attr.value == "grad":
            grads.append(node)
    return any(id(node) not in assigned and id(node) not in clearing for node in grads)
