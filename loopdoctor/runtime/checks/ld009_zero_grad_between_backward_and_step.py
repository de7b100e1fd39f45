"""LD009 at run time: ``zero_grad`` between ``backward()`` and the step, which then has nothing to apply."""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class ClearedBeforeStep(Check):
    code = "LD009"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._cleared_after: dict[int, int] = {}  # id(optimizer) -> the backward pass its latest clearing followed
        self._module_cleared: tuple = (None, 0)  # (module, backward pass) of the latest Module.zero_grad

    def on_zero_grad(self, optimizer) -> None:
        self._cleared_after[id(optimizer)] = self.state.last_backward_at

    def on_module_zero_grad(self, module) -> None:
        self._module_cleared = (module, self.state.last_backward_at)

    def on_pre_step(self, optimizer, closure: bool) -> None:
        state, key = self.state, id(optimizer)
        last_backward = state.last_backward_at
        if closure or not last_backward or last_backward < state.last_step_at.get(key, 0):
            return
        cleared = self._cleared_after.get(key) == last_backward or self._module_cleared_holds(optimizer, last_backward)
        if cleared:
            self.report(
                f"the gradients of `{type(optimizer).__name__}` are cleared between `backward()` and `step()`: the step "
                "applies nothing (or only weight decay and momentum), so the model does not learn from this batch",
                user_site(),
            )

    def _module_cleared_holds(self, optimizer, last_backward: int) -> bool:
        module, after = self._module_cleared
        if module is None or after != last_backward:
            return False
        held = self.state.parameter_ids(optimizer)
        return any(id(p) in held for p in module.parameters())
