"""LD018 at run time: ``F.dropout`` still dropping while the module that calls it is in eval mode."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class FunctionalDropoutInEval(Check):
    code = "LD018"

    def on_dropout(self, p: float) -> None:
        module = self.state.running[-1]
        if not module.training:
            self.report(
                f"functional dropout (p={p:g}) is active inside `{type(module).__name__}` while it is in eval mode: "
                "`F.dropout` defaults to `training=True`, so evaluation still drops units",
                user_site(),
            )
