"""LD001 at run time: cross-entropy given a probability distribution instead of logits."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.checks.provenance import SOFTMAX, is_distribution, made_by
from loopdoctor.runtime.findings import user_site

VALUE_CHECKS = 16  # without a graph (no_grad) the values are tested: on the first calls only


class SoftmaxIntoCrossEntropy(Check):
    code = "LD001"
    loss_kind = "cross_entropy"
    loss_name = "cross_entropy"
    expects = "logits: it applies log_softmax itself, so the probabilities are squashed twice and the gradients shrink"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._value_checks = 0

    def on_loss(self, kind: str, input) -> None:
        if kind != self.loss_kind or not hasattr(input, "grad_fn"):
            return
        if made_by(input, SOFTMAX):
            how = "the output of softmax"
        elif input.grad_fn is None and self._value_checks < VALUE_CHECKS:
            self._value_checks += 1
            if not is_distribution(input):
                return
            how = "non-negative rows that sum to 1"
        else:
            return
        self.report(f"`{self.loss_name}` is given probabilities ({how}); it expects {self.expects}", user_site())
