"""LD008 at run time: training steps on a model left in eval mode (Dropout off, BatchNorm frozen)."""

from __future__ import annotations

import torch

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site


class TrainingInEvalMode(Check):
    code = "LD008"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._eval_forwards: dict[int, tuple] = {}  # id(model) -> (model, site) of its latest forward, in eval mode

    def on_root_forward(self, module) -> None:
        if not torch.is_grad_enabled():
            return
        if module.training:
            self._eval_forwards.pop(id(module), None)
        elif self.state.has_mode_dependent_layers(module):
            self._eval_forwards[id(module)] = (module, user_site())

    def on_backward(self, roots) -> None:
        for module, site in self._eval_forwards.values():
            if self.state.is_trained(module):  # (a teacher in eval mode is not)
                self.report(
                    f"`{type(module).__name__}` is trained in eval mode: its forward ran after `.eval()` and before any "
                    "`.train()`, so Dropout is off and BatchNorm uses (and never updates) its running statistics",
                    site,
                )
        self._eval_forwards.clear()
