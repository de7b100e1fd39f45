"""LD002 at run time: an optimizer step on gradients that still hold the previous steps'.

After each step a sample of the optimizer's gradients is remembered (weakly: the tensor and its
version counter; after every step at first, then after every 16th: ``LoopState.sampled``).
The gradients count as cleared when ``zero_grad`` runs (the optimizer's or a
module's), when a gradient is gone or replaced (``p.grad = None``), or when one is changed in
place before the next backward pass (``p.grad.zero_()``). A step after a backward pass with none
of these is the mistake.
"""

from __future__ import annotations

import weakref

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

SAMPLE = 16  # gradients remembered per optimizer: clearing touches all of them, or none


class GradientsNotCleared(Check):
    code = "LD002"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._samples: dict[int, list] = {}  # id(optimizer) -> [(parameter, ref to its grad, version)]
        self._cleared: dict[int, bool] = {}
        self._backward_seen: dict[int, bool] = {}

    def on_post_step(self, optimizer) -> None:
        key = id(optimizer)
        if not self.state.sampled():
            self._samples.pop(key, None)  # not looked at in the step that follows
            return
        sample = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None and len(sample) < SAMPLE:
                    sample.append((param, weakref.ref(param.grad), param.grad._version))
        self._samples[key], self._cleared[key], self._backward_seen[key] = sample, False, False

    def on_zero_grad(self, optimizer) -> None:
        self._cleared[id(optimizer)] = True

    def on_module_zero_grad(self, module) -> None:
        for key in self._cleared:
            self._cleared[key] = True

    def on_backward(self, roots) -> None:
        for key, sample in self._samples.items():
            if not self._cleared[key] and _cleared(sample, versions=not self._backward_seen[key]):
                self._cleared[key] = True
            self._backward_seen[key] = True

    def on_pre_step(self, optimizer, closure: bool) -> None:
        key = id(optimizer)
        sample = self._samples.get(key)
        if closure or not sample or self._cleared[key]:
            return  # (a closure clears and recomputes inside the step)
        if self.state.last_backward_at < self.state.last_step_at.get(key, 0):
            return  # no backward pass since the last step
        if _cleared(sample, versions=not self._backward_seen[key]):
            return
        self.report(
            f"`{type(optimizer).__name__}.step()` uses gradients that were not cleared since its previous step: "
            "PyTorch adds each backward pass into `.grad`, so this step follows the sum of every batch so far",
            user_site(),
        )


def _cleared(sample: list, versions: bool) -> bool:
    for param, grad_ref, version in sample:
        grad = param.grad
        if grad is None or grad_ref() is not grad or (versions and grad._version != version):
            return True
    return False
