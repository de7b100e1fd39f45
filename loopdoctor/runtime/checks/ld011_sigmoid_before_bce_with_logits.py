"""LD011 at run time: BCE-with-logits given the output of a sigmoid."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.checks.provenance import SIGMOID, made_by
from loopdoctor.runtime.findings import user_site


class SigmoidIntoBceWithLogits(Check):
    code = "LD011"

    def on_loss(self, kind: str, input) -> None:
        if kind == "bce_with_logits" and made_by(input, SIGMOID):
            self.report(
                "`binary_cross_entropy_with_logits` is given the output of a sigmoid; it applies the sigmoid "
                "itself, so every prediction is squeezed into (0.5, 0.73) and the loss barely moves", user_site(),
            )
