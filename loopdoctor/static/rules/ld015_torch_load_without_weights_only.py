"""LD015: ``torch.load`` without ``weights_only=True``."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.fixes import UNSAFE, FixPlan, Replace
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, call_args
from loopdoctor.static.rules.base import Rule, Violation


class TorchLoadWithoutWeightsOnly(Rule):
    code = "LD015"
    required_tokens = (("torch.load", "import load"),)

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in model.iter_calls():
            if site.callee not in ("torch.load", "torch.serialization.load"):
                continue
            positional, keywords = call_args(site.node)
            if "weights_only" in keywords or len(positional) >= 4 or any(a.star for a in site.node.args):
                continue  # an explicit choice (even False) is the author's to make
            code = model.module.code_for_node(site.node)
            fixed = code[:-1].rstrip().rstrip(",") + (", " if site.node.args else "") + "weights_only=True)"
            yield Violation(
                site.node,
                "`torch.load` unpickles arbitrary objects unless `weights_only=True`: loading an "
                "untrusted checkpoint can execute code (torch < 2.6 defaults to False)",
                FixPlan(UNSAFE, "pass `weights_only=True`", (Replace(site.node, fixed),)),
            )
