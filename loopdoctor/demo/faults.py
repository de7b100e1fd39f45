"""Realistic faults for ``loopdoctor triage --inject STAGE --step N``.

Each fault changes one thing in the reference trainer at optimizer step N (counted from 0, as the
diagnosis counts) and leaves every other step untouched. The watch must then name the stage, the
step and the module or parameter where the first non-finite value appeared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NoFault:
    step: int
    summary = "no fault"

    def batch(self, step: int, features: torch.Tensor) -> torch.Tensor:
        return features

    def forward(self, step: int, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        return model(features)

    def loss(self, step: int, logits: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor:
        return loss_fn(logits, labels)

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        return None


class NaNFeature(NoFault):
    """input: one ticket arrives with a missing sentiment score, encoded as NaN."""

    summary = "one ticket has a NaN sentiment score"

    def batch(self, step, features):
        if step != self.step:
            return features
        features = features.clone()
        features[0, 1] = float("nan")
        return features


class HalfPrecisionOverflow(NoFault):
    """activation: the first layer runs in float16 for one step (a stray ``.half()`` or an
    autocast region around it) while one ticket's score was never normalised: 1e5 is finite in
    float32 but beyond float16's largest value, 65504, so the layer's output is Inf in the faulty
    step itself (an un-normalised float32 score cannot overflow this small model's first layer:
    its weights stay too small until about step 16)."""

    summary = "the first layer runs in float16 on a ticket score of 1e5 (float16 ends at 65504)"

    def forward(self, step, model, features):
        if step != self.step:
            return model(features)
        features = features.clone()
        features[0, 0] = 1e5
        layer = getattr(model, "module", model)[0]  # under DDP, the wrapped model's first layer
        layer.forward = lambda x: F.linear(x.half(), layer.weight.half(), layer.bias.half()).float()
        try:
            return model(features)
        finally:
            del layer.forward


class UnderflowingSoftmaxLoss(NoFault):
    """loss: a hand-written, label-smoothed cross-entropy that takes log(softmax(logits / T)) with a
    sharp temperature; a probability underflows to 0 and its log is -inf."""

    summary = "the loss takes log(softmax(logits / 1e-4)) by hand"

    temperature = 1e-4
    smoothing = 0.1

    def loss(self, step, logits, labels, loss_fn):
        if step != self.step:
            return loss_fn(logits, labels)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        targets = F.one_hot(labels, logits.shape[1]).float() * (1 - self.smoothing) + self.smoothing / logits.shape[1]
        return -(targets * torch.log(probabilities)).sum(dim=1).mean()


class SqrtAtZeroPenalty(NoFault):
    """gradient: a distance penalty sqrt(sum((logits - teacher)^2)) to a teacher that was just synced
    from the model, so the distance is exactly 0: finite forward, infinite derivative."""

    summary = "the loss adds sqrt(sum((logits - teacher)^2)) with teacher == logits"

    def loss(self, step, logits, labels, loss_fn):
        loss = loss_fn(logits, labels)
        if step != self.step:
            return loss
        teacher = logits.detach()
        return loss + 0.01 * torch.sqrt(((logits - teacher) ** 2).sum())


class OversizedLearningRate(NoFault):
    """parameter: a warmup factor computed as ``step / warmup_steps`` in numpy with
    ``warmup_steps = 0`` makes the learning rate infinite for one step; the gradients are fine."""

    summary = "the learning rate is inf for one step"

    def before_step(self, step, optimizer):
        if step == self.step:
            for group in optimizer.param_groups:
                group["lr"] = float("inf")


FAULTS = {
    "input": NaNFeature,
    "activation": HalfPrecisionOverflow,
    "loss": UnderflowingSoftmaxLoss,
    "gradient": SqrtAtZeroPenalty,
    "parameter": OversizedLearningRate,
}


def make_fault(stage: str, step: int) -> NoFault:
    return FAULTS[stage](step)
