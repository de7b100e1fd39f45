"""LD201: a parameter that gets gradients in training steps but that no optimizer holds.

Looked at after steps 1, 2, 4, 8, ... (a walk over the model's parameters each time): a
parameter of a trained model with a gradient, wanting one, and in no optimizer is never
updated (a head attached, or a layer unfrozen, after the optimizer was built). Models no
optimizer trains at all (a teacher, an EMA copy) are not looked at.
"""

from __future__ import annotations

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

NAMES_SHOWN = 4


class ParameterOutsideOptimizer(Check):
    code = "LD201"
    name = "parameter-outside-optimizer"
    summary = "A parameter receives gradients in training steps, but no optimizer holds it: it is never updated"
    fix_hint = "build the optimizer after the model is complete, or add the new parameters with `optimizer.add_param_group`"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._models: dict[int, object] = {}  # id -> model trained by a backward pass (roots of forward passes)
        self._next_look = 1

    def on_root_forward(self, module) -> None:
        if module.training:
            self._models.setdefault(id(module), module)

    def on_post_step(self, optimizer) -> None:
        step = self.state.step
        if step < self._next_look:
            return
        self._next_look = 2 * step
        held = self.state.held_parameter_ids()
        for model in self._models.values():
            params = list(model.named_parameters())
            if not any(id(p) in held for _, p in params):
                continue
            missing = [name for name, p in params if p.grad is not None and p.requires_grad and id(p) not in held]
            if missing:
                self._report(model, missing, optimizer)

    def _report(self, model, missing: list[str], optimizer) -> None:
        built = self.state.built_at.get(id(optimizer))
        names = ", ".join(f"`{name}`" for name in missing[:NAMES_SHOWN]) + (" ..." if len(missing) > NAMES_SHOWN else "")
        self.report(
            f"{len(missing)} parameter(s) of `{type(model).__name__}` get gradients but no optimizer holds them "
            f"({names}): they are never updated",
            built or user_site(),
            related=[f"(seen after the step at {user_site()})"] if built else [],
        )
