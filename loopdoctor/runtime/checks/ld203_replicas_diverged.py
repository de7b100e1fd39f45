"""LD203: data-parallel replicas whose parameters differ after the same step.

Under torchrun every rank takes a checksum of the trained model's parameters (one float64 sum
per parameter) after steps 1, 2, 4, ..., 64 and then every 128th; at the end the ranks exchange
them through a shared directory (no collective call, so a rank that went astray cannot hang the
others) and the first step where a rank differs from the lowest one is reported. Replicas that
DistributedDataParallel keeps in sync are bitwise equal; they drift apart when the loop calls
the wrapped module directly (no gradient all-reduce) or a rank skips a step.
"""

from __future__ import annotations

import math
import os

import torch

from loopdoctor.runtime import distributed
from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

EVERY = 128
NAMES_SHOWN = 3


class ReplicasDiverged(Check):
    code = "LD203"
    name = "replicas-diverged"
    summary = "Data-parallel replicas hold different parameters after the same optimizer step"
    fix_hint = "run every forward through the DistributedDataParallel wrapper, and step every rank on every iteration"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._world = int(os.environ.get("WORLD_SIZE", "1"))
        self._rank = int(os.environ.get("RANK", "0"))
        self._model = None
        self._sums: dict[str, list[float]] = {}
        self._site = None

    def on_root_forward(self, module) -> None:
        if self._model is None and module.training and torch.is_grad_enabled():
            self._model = getattr(module, "module", module)  # inside DistributedDataParallel

    def on_post_step(self, optimizer) -> None:
        step = self.state.step
        if self._world < 2 or self._model is None or str(step) in self._sums:
            return
        if step & (step - 1) and step % EVERY:
            return  # checked at powers of two, then every EVERY steps
        self._site = self._site or user_site()
        with torch.no_grad():
            self._sums[str(step)] = [float(p.double().sum()) for p in self._model.parameters()]

    def on_close(self) -> None:
        if self._world < 2 or not self._sums:
            return
        names = [name for name, _ in self._model.named_parameters()]
        found = distributed.gather_from_ranks("checksums", self._rank, self._world, self._sums)
        reference = min(found)
        for step in sorted(self._sums, key=int):
            differing = {rank: _differing(found[reference].get(step), sums.get(step)) for rank, sums in found.items()}
            differing = {rank: params for rank, params in differing.items() if params}
            if differing:
                self._report(int(step), reference, differing, names)
                return

    def _report(self, step: int, reference: int, differing: dict, names: list[str]) -> None:
        ranks = ", ".join(str(rank) for rank in sorted(differing))
        first = next(iter(differing.values()))
        shown = ", ".join(f"`{names[i]}`" for i in first[:NAMES_SHOWN] if i < len(names))
        self.report(
            f"after step {step} the parameters of rank(s) {ranks} differ from rank {reference}'s ({shown}"
            f"{' ...' if len(first) > NAMES_SHOWN else ''}): the replicas have drifted apart",
            self._site, step=step,
        )


def _differing(reference, sums) -> list[int]:
    """Indices of the parameters whose checksums differ (all of them when a rank has none for the step)."""
    if reference is None or sums is None or len(reference) != len(sums):
        return list(range(len(reference or sums or [0])))
    return [i for i, (a, b) in enumerate(zip(reference, sums)) if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)]
