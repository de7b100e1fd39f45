"""LD011: probabilities from sigmoid passed to a loss that applies sigmoid itself."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, argument
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.probabilities import Probabilities
from loopdoctor.static import roles

WITH_LOGITS = ("BCEWithLogitsLoss", "binary_cross_entropy_with_logits")


class SigmoidBeforeBceWithLogits(Rule):
    code = "LD011"
    name = "sigmoid-before-bce-with-logits"
    summary = "Sigmoid output passed to `BCEWithLogitsLoss` / `binary_cross_entropy_with_logits`"
    fix_hint = "pass the raw logits: the loss applies sigmoid itself"
    crossfile_tokens = ("with_logits", "WithLogits")
    required_tokens = (("with_logits", "WithLogits"), ("sigmoid", "Sigmoid", "expit"))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in semantic.iter_calls():
            if roles.loss_kind_of_call(semantic, site) not in WITH_LOGITS:
                continue
            loss_input = argument(site.node, 0, "input")
            origin = Probabilities(semantic, "sigmoid").origin(loss_input, site.function, site.order) if loss_input is not None else None
            if origin:
                yield Violation(
                    site.node,
                    f"{origin} is passed to a loss that applies sigmoid itself: the loss sees "
                    "sigmoid(sigmoid(x)), confined to (0.5, 0.73), and learns almost nothing",
                )
