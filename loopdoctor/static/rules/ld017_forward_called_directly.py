"""LD017: ``model.forward(x)`` instead of ``model(x)``."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, FixPlan, Replace
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static import roles


class ForwardCalledDirectly(Rule):
    code = "LD017"
    name = "forward-called-directly"
    summary = "`model.forward(x)` instead of `model(x)`: hooks are skipped"
    fix_hint = "call the module itself: `model(x)`"
    required_tokens = ((".forward(",),)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in semantic.iter_calls():
            if site.method != "forward" or site.receiver in (None, "self") or site.receiver.startswith("super"):
                continue
            role = roles.role_of(semantic, site.receiver, site.function)
            if role is None or role.kind not in ("model", "loss") or role.source is None:
                continue  # only objects built here from nn.Module classes: other libraries have forward() too
            func = site.node.func
            assert isinstance(func, cst.Attribute)
            called = semantic.module.code_for_node(func.value)
            arguments = semantic.module.code_for_node(site.node)[len(semantic.module.code_for_node(func)):]
            yield Violation(
                site.node,
                f"`{site.receiver}.forward(...)` skips the module's hooks (forward and backward hooks, "
                "DDP and FSDP wrappers, loopdoctor's runtime triage)",
                FixPlan(UNSAFE, f"call `{called}(...)`", (Replace(site.node, called + arguments),)),
            )
