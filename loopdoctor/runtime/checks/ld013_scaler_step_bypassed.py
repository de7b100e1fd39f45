"""LD013 at run time: ``optimizer.step()`` on gradients a GradScaler has scaled, not through ``scaler.step``."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class ScalerStepBypassed(Check):
    code = "LD013"

    def on_pre_step(self, optimizer, closure: bool) -> None:
        state = self.state
        if state.scaler_stepping or not state.scaled_gradients():
            return
        if any(id(optimizer) in unscaled for unscaled in state.unscaled.values()):
            return  # unscaled by hand: the gradients are true ones
        self.report(
            f"`{type(optimizer).__name__}.step()` is called directly on gradients GradScaler has scaled: the update is "
            "the scale (about 65536 at first) times too large, and overflowed steps are not skipped",
            user_site(),
        )
