"""LD016: a loss computed and backpropagated inside a block that disables gradients."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.flow import Flow, is_backward
from loopdoctor.static.model import CallSite, SemanticModel, dotted
from loopdoctor.static.roles import GRAD_MODE_TOKENS
from loopdoctor.static.rules.base import BACKWARD_CALL, Rule, Violation


class BackwardUnderNoGrad(Rule):
    code = "LD016"
    name = "backward-under-no-grad"
    summary = "`backward()` inside `torch.no_grad()` / `torch.inference_mode()`"
    fix_hint = "compute the loss and call `backward()` outside the no_grad block"
    required_tokens = (BACKWARD_CALL, GRAD_MODE_TOKENS)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in semantic.iter_calls():
            if is_backward(site) and site.grad_block is not None and _loss_made_in_block(semantic, site):
                yield Violation(
                    site.node,
                    "the loss is computed and backpropagated where gradients are disabled: it has no "
                    "graph, so `backward()` fails (or, under `inference_mode`, cannot be fixed later)",
                )


def _loss_made_in_block(semantic: SemanticModel, site: CallSite) -> bool:
    """``backward()`` under no_grad is harmless for a loss built outside (d2l does it on purpose);
    it is a mistake when the loss itself was built inside the same block."""
    func = site.node.func
    if site.method == "backward" and isinstance(func, cst.Attribute):
        root = func.value
    else:  # accelerator.backward(loss), torch.autograd.backward(loss)
        root = site.node.args[0].value if site.node.args else None
    if root is None:
        return False
    key = dotted(root)
    if key is None:
        return True  # model(x).sum().backward(): built right here
    assignment = semantic.reaching_value(key, site.function, site.order)
    if assignment is None:
        return False
    first_in_block = min(s.order for s in site.function.calls if s.grad_block is site.grad_block)
    return first_in_block <= assignment.order < site.order
