"""LD005 at run time: gradients clipped while GradScaler still has them multiplied by its scale."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class ClipBeforeUnscale(Check):
    code = "LD005"

    def on_clip(self, parameters) -> None:
        state = self.state
        scalers = [key for key, at in state.scaled_at.items() if at < state.last_backward_at]
        if not scalers:
            return
        clipped = {id(p) for p in parameters}
        owners = {id(o) for o in state.live_optimizers() if clipped & state.parameter_ids(o)}
        for scaler in scalers:
            unscaled = state.unscaled.get(scaler, set())
            if (owners - unscaled) if owners else not unscaled:
                self.report(
                    "gradients are clipped while GradScaler still has them multiplied by its scale (about 65536 at "
                    "first): the threshold is compared with scaled norms, so it clips nearly every step", user_site(),
                )
                return
