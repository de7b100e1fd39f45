"""LD007: a graph-connected loss kept across iterations instead of a plain number."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import Function, SemanticModel, dotted
from loopdoctor.static.rules.base import BACKWARD_CALL, Rule, Violation
from loopdoctor.static import roles

KEEPERS = ("append", "extend", "insert")


class LossAccumulatedWithGraph(Rule):
    code = "LD007"
    name = "loss-accumulated-with-graph"
    summary = "A graph-connected loss kept across iterations (`total += loss`, `losses.append(loss)`)"
    fix_hint = "keep `loss.item()` (or `loss.detach()`)"
    required_tokens = (BACKWARD_CALL, ("+=", "append"))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for augmented in function.augmented:
                loop = augmented.loop
                if loop is None or not flow.is_training_loop(loop) or function.assigned_in(augmented.key, loop):
                    continue
                loss = _graph_loss(semantic, function, augmented.value, augmented.order)
                if loss:
                    yield self._violation(augmented.statement, loss, f"`{augmented.key} += {loss}`")
            for site in function.calls:
                loop = site.loop
                if site.method not in KEEPERS or loop is None or not site.receiver or not flow.is_training_loop(loop):
                    continue
                if function.assigned_in(site.receiver.split(".")[0], loop) or not site.node.args:
                    continue
                loss = _graph_loss(semantic, function, site.node.args[0].value, site.order)
                if loss:
                    yield self._violation(site.node, loss, f"`{site.receiver}.{site.method}({loss})`")

    def _violation(self, node: cst.CSTNode, loss: str, what: str) -> Violation:
        return Violation(
            node,
            f"{what} keeps the loss tensor and its whole autograd graph alive across iterations: "
            "memory grows every batch",
        )


def _graph_loss(semantic: SemanticModel, function: Function, value: cst.BaseExpression, order: int) -> Optional[str]:
    """The name of a loss tensor still attached to its graph, when ``value`` is one."""
    if not isinstance(value, cst.Name):
        return None
    assignment = semantic.reaching_value(value.value, function, order)
    if assignment is None or not isinstance(assignment.value, cst.Call) or assignment.unpack_index is not None:
        return None
    call = assignment.value
    qualified = semantic.resolve(call.func) or ""
    is_functional_loss = qualified.startswith("torch.nn.functional.") and (
        "loss" in qualified or qualified.endswith(("cross_entropy", "binary_cross_entropy_with_logits"))
    )
    role = roles.role_of(semantic, dotted(call.func), function) if dotted(call.func) else None
    if is_functional_loss or (role is not None and role.kind == "loss"):
        backward_on_it = any(s.method == "backward" and s.receiver == value.value for s in function.calls)
        return value.value if backward_on_it else None
    return None
