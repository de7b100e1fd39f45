"""LD006: a model evaluated with gradient tracking on, building a graph nobody uses."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import EVALUATION_LOOP, Flow, is_backward, is_evaluation_loop, is_lightning_eval_hook
from loopdoctor.static.model import SemanticModel, dotted
from loopdoctor.static.rules.base import Rule, Violation


class EvalWithoutNoGrad(Rule):
    code = "LD006"

    @classmethod
    def wants(cls, source: str) -> bool:
        return EVALUATION_LOOP.search(source) is not None

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in model.functions:
            if is_lightning_eval_hook(function) or any(is_backward(s) for s in function.calls):
                continue  # gradients may be wanted here (saliency, adversarial examples, ...)
            if flow.function_effects(function).backward:
                continue
            for loop in function.loops:
                if not is_evaluation_loop(loop, flow):
                    continue
                for site in function.calls:
                    key = dotted(site.node.func)
                    if loop.contains(site.order) and site.grad_block is None and key and model.has_role(key, function, "model"):
                        yield Violation(
                            site.node,
                            f"`{key}` is evaluated with gradient tracking on: every batch builds an autograd "
                            "graph that is never used (memory and time); wrap the loop in `torch.no_grad()`",
                        )
                        break
