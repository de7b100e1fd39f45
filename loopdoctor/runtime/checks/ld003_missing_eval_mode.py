"""LD003 at run time: a trained model with Dropout or BatchNorm evaluated in training mode.

Seen two ways: a forward pass under ``no_grad`` / ``inference_mode`` while the model is in
training mode; and, after training has begun, ``EVALUATION_STREAK`` forward passes in a row in
training mode with no backward pass between them (an evaluation loop without ``no_grad``).
Models no optimizer trains (a teacher, an EMA copy, a momentum encoder) are their authors'
business and are never reported, and neither is a pass that recomputes BatchNorm statistics on
purpose (``torch.optim.swa_utils.update_bn``, precise-BN helpers: a function named for it on the
stack).
"""

from __future__ import annotations

import re
import sys

import torch

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

# Forwards in a row without backward that are an evaluation, not a multi-view training step
# (siamese, triplet and multi-crop steps run two to a handful before their one backward).
EVALUATION_STREAK = 8
# Functions that run a model in training mode under no_grad to recompute BatchNorm statistics.
RECALIBRATION = re.compile(r"(^|_)(bn|batch_?norm|precise_bn)(_|$)|recalibrat", re.I)


class EvaluationInTrainingMode(Check):
    code = "LD003"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._streaks: dict[int, int] = {}

    def on_root_forward(self, module) -> None:
        if not module.training or not self.state.has_mode_dependent_layers(module):
            return
        if not torch.is_grad_enabled():
            if not self.state.optimizers or self.state.is_trained(module):
                self._report(module, "under `no_grad`/`inference_mode`")
            return
        if not self.state.steps:
            return
        streak = self._streaks[id(module)] = self._streaks.get(id(module), 0) + 1
        if streak == EVALUATION_STREAK and self.state.is_trained(module):
            self._report(module, f"{streak} times in a row with no backward pass between them")

    def on_backward(self, roots) -> None:
        self._streaks.clear()

    def _report(self, module, how: str) -> None:
        if _recalibrating_batch_norm():
            return
        self.report(
            f"`{type(module).__name__}` is evaluated in training mode ({how}): its Dropout/BatchNorm layers "
            "still drop units and update running statistics, so the scores are noisy and the statistics drift",
            user_site(),
        )


def _recalibrating_batch_norm() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if RECALIBRATION.search(frame.f_code.co_name):
            return True
        frame = frame.f_back
    return False
