"""LD012: softmax (not log_softmax) into NLLLoss, and log(softmax(x)) written in two steps."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, argument
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.probabilities import Probabilities
from loopdoctor.static import roles

NLL = ("NLLLoss", "nll_loss")


class SoftmaxBeforeNllLoss(Rule):
    code = "LD012"
    name = "softmax-before-nll-loss"
    summary = "`softmax` (not `log_softmax`) into `NLLLoss`, or `log(softmax(x))` in two steps"
    fix_hint = "use `log_softmax(x)` (or CrossEntropyLoss on the logits)"
    crossfile_tokens = ("nll_loss", "NLLLoss")
    required_tokens = (("softmax", "Softmax"), ("nll", "NLL", "log("))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in semantic.iter_calls():
            if roles.loss_kind_of_call(semantic, site) in NLL:
                loss_input = argument(site.node, 0, "input")
                origin = Probabilities(semantic).origin(loss_input, site.function, site.order) if loss_input is not None else None
                if origin:
                    yield Violation(
                        site.node,
                        f"{origin} is passed to NLL loss, which expects log-probabilities: the loss "
                        "is computed on the wrong scale and its gradients are wrong",
                    )
                continue
            logged = _log_argument(semantic, site.node)
            if logged is not None and Probabilities(semantic).origin(logged, site.function, site.order):
                yield Violation(
                    site.node,
                    "`log(softmax(x))` in two steps underflows: a probability that rounds to 0 gives "
                    "-inf (and NaN gradients)",
                )


def _log_argument(semantic: SemanticModel, call: cst.Call):
    """``torch.log(p)`` -> p; ``p.log()`` -> p."""
    if roles.is_torch_name(semantic, semantic.resolve(call.func), "log"):
        return argument(call, 0, "input")
    if isinstance(call.func, cst.Attribute) and call.func.attr.value == "log" and not call.args:
        return call.func.value
    return None
