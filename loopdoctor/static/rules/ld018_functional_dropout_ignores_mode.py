"""LD018: functional dropout in ``forward`` that ignores the module's train/eval mode."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.fixes import SAFE, AddKeyword, FixPlan
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, call_args
from loopdoctor.static.rules.base import Rule, Violation

DROPOUTS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")


class FunctionalDropoutIgnoresMode(Rule):
    code = "LD018"
    name = "functional-dropout-ignores-mode"
    summary = "`F.dropout` in `forward` without `training=self.training`: dropout stays on in eval"
    fix_hint = "pass `training=self.training` (or use an `nn.Dropout` module)"
    required_tokens = (("dropout",), ("def forward",))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            cls = function.owner_class
            if function.name != "forward" or cls is None or not cls.is_module:
                continue
            for site in function.calls:
                if not (site.callee and site.callee.startswith("torch.nn.functional.") and site.callee.rsplit(".", 1)[1] in DROPOUTS):
                    continue
                positional, keywords = call_args(site.node)
                if "training" in keywords or len(positional) >= 3:
                    continue
                yield Violation(
                    site.node,
                    "functional dropout defaults to `training=True`: it keeps dropping activations "
                    "after `model.eval()`, so evaluation is noisy and wrong",
                    FixPlan(SAFE, "pass `training=self.training`", (AddKeyword(site.node, "training", "self.training"),)),
                )
