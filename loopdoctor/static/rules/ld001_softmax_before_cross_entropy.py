"""LD001: probabilities passed as the input of a cross-entropy loss."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import SAFE, UNSAFE, FixPlan, Replace
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import CallSite, SemanticModel, argument
from loopdoctor.static import roles
from loopdoctor.static.roles import SOFTMAX_FUNCTIONS
from loopdoctor.static.probabilities import Probabilities
from loopdoctor.static.rules.base import Rule, Violation

CROSS_ENTROPY = ("CrossEntropyLoss", "cross_entropy")


class SoftmaxBeforeCrossEntropy(Rule):
    code = "LD001"
    name = "softmax-before-cross-entropy"
    summary = "Probabilities from softmax passed as the input of CrossEntropyLoss / F.cross_entropy"
    fix_hint = "pass the raw logits: cross-entropy applies log-softmax itself"
    crossfile_tokens = ("cross_entropy", "CrossEntropyLoss")
    required_tokens = (("cross_entropy", "CrossEntropyLoss"), ("softmax", "Softmax"))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in semantic.iter_calls():
            if roles.loss_kind_of_call(semantic, site) not in CROSS_ENTROPY:
                continue
            loss_input = argument(site.node, 0, "input")
            if loss_input is None:
                continue
            origin = Probabilities(semantic).origin(loss_input, site.function, site.order)
            if origin:
                yield Violation(
                    site.node,
                    f"{origin} is passed as the input of cross-entropy, which applies log-softmax "
                    "itself: the loss sees softmax twice and its gradients shrink",
                    _fix(semantic, loss_input, site),
                )


def _softmax_argument(semantic: SemanticModel, call: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``F.softmax(x, 1)`` / ``torch.softmax(x, 1)`` -> x; ``x.softmax(1)`` -> x."""
    if not isinstance(call, cst.Call):
        return None
    qualified = semantic.resolve(call.func)
    if qualified in SOFTMAX_FUNCTIONS or roles.is_torch_name(semantic, qualified, "softmax"):
        return argument(call, 0, "input")
    if isinstance(call.func, cst.Attribute) and call.func.attr.value == "softmax":
        return call.func.value
    return None


def _fix(semantic: SemanticModel, loss_input: cst.BaseExpression, site: CallSite) -> Optional[FixPlan]:
    """Pass the logits instead: safe when the softmax is written inline in the loss call; unsafe
    through a name, whose logits may have been rebound in between."""
    logits = _softmax_argument(semantic, loss_input)
    if logits is not None:
        code = semantic.module.code_for_node(logits)
        return FixPlan(SAFE, f"pass `{code}` (the logits)", (Replace(loss_input, code),))
    if isinstance(loss_input, cst.Name):
        assignment = semantic.reaching_value(loss_input.value, site.function, site.order)
        logits = _softmax_argument(semantic, assignment.value) if assignment and assignment.unpack_index is None else None
        if logits is not None and isinstance(logits, (cst.Name, cst.Attribute)):
            code = semantic.module.code_for_node(logits)
            return FixPlan(UNSAFE, f"pass `{code}` (the logits) instead of `{loss_input.value}`", (Replace(loss_input, code),))
    return None
