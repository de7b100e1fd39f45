"""What every loop check needs to know about the run so far, kept in one place.

The recorder hands each event to this state first, then to the checks: step counts per
optimizer, the order of backward passes and gradient clearing (a sequence number per event),
the modules whose forward is under way, GradScaler's phase, and every optimizer that exists.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from torch import nn

from loopdoctor.runtime.findings import Site

SAMPLE_ALL = 64
SAMPLE_EVERY = 16
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


class LoopState:
    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self.step = 0  # optimizer steps completed: the most any one optimizer completed (a GAN steps two per step)
        self.steps: dict[int, int] = {}  # id(optimizer) -> completed steps
        self.attempts: dict[int, int] = {}  # id(optimizer) -> steps asked for (GradScaler may skip them)
        self.last_step_at: dict[int, int] = {}  # id(optimizer) -> `now` at its latest step
        self.optimizers: dict[int, weakref.ref] = {}
        self.built_at: dict[int, Site] = {}  # id(optimizer) -> where the user built it
        self.backwards = 0
        self.last_backward_at = 0
        self.running: list[nn.Module] = []  # modules whose forward is under way, outermost first (sources.RUNNING once added)
        self.scaler_stepping = 0  # > 0 inside GradScaler.step
        self.scaled_at: dict[int, int] = {}  # id(scaler) -> `now` of scale() since its last update()
        self.unscaled: dict[int, set[int]] = {}  # id(scaler) -> optimizers unscaled since its last update()
        self._params: dict[int, tuple[int, frozenset]] = {}  # id(optimizer) -> (count, ids of its parameters)
        self._held: tuple = ((), frozenset())  # (which optimizers with how many parameters, their parameters' ids)
        self._trained: dict[int, tuple] = {}  # id(module) -> (the `_held` key it was judged against, trained?)
        self._mode_dependent: dict[int, bool] = {}

    def sampled(self) -> bool:
        """Is this step one that the checks which need not look at every step look at? All of
        the first SAMPLE_ALL steps, then every SAMPLE_EVERY-th: a mistake made every step is
        found at its first, at a fixed cost per step that vanishes on long runs."""
        return sampled_step(self.step)

    def tick(self) -> int:
        """The next sequence number: events that need ordering (backward passes, steps) take one."""
        return next(self._clock)

    # ---- queries the checks share -------------------------------------------------------------
    def live_optimizers(self) -> list[Any]:
        alive = []
        for key, ref in list(self.optimizers.items()):
            optimizer = ref()
            if optimizer is None:
                del self.optimizers[key]
            else:
                alive.append(optimizer)
        return alive

    def parameter_ids(self, optimizer: Any) -> frozenset:
        """Ids of the parameters an optimizer holds (cached; rebuilt when a group is added)."""
        groups = optimizer.param_groups
        count = sum(len(group["params"]) for group in groups)
        cached = self._params.get(id(optimizer))
        if cached is None or cached[0] != count:
            cached = self._params[id(optimizer)] = (count, frozenset(id(p) for g in groups for p in g["params"]))
        return cached[1]

    def held_parameter_ids(self) -> frozenset:
        """Ids of every parameter some live optimizer holds (rebuilt only when that changes)."""
        optimizers = self.live_optimizers()
        key = tuple((id(o), sum(len(g["params"]) for g in o.param_groups)) for o in optimizers)
        if key != self._held[0]:
            self._held = (key, frozenset().union(*(self.parameter_ids(o) for o in optimizers)))
        return self._held[1]

    def is_trained(self, module: nn.Module) -> bool:
        """Does an optimizer hold one of the module's parameters? (A teacher, an EMA copy or a
        momentum encoder is run but never trained: its mode is its author's business.)"""
        held = self.held_parameter_ids()
        known = self._trained.get(id(module))
        if known is None or known[0] is not self._held[0]:
            known = self._trained[id(module)] = (self._held[0], any(id(p) in held for p in module.parameters()))
        return known[1]

    def has_mode_dependent_layers(self, module: nn.Module) -> bool:
        """Dropout with p > 0, or a norm layer that tracks running statistics: what eval() changes."""
        known = self._mode_dependent.get(id(module))
        if known is None:
            known = self._mode_dependent[id(module)] = any(_depends_on_mode(m) for m in module.modules())
        return known

    def scaled_gradients(self) -> bool:
        """Has an enabled GradScaler scaled a loss that was backpropagated since its last update?"""
        return any(at < self.last_backward_at for at in self.scaled_at.values())

    # ---- events -------------------------------------------------------------------------------
    def on_optimizer_created(self, optimizer: Any, site: Site) -> None:
        self.optimizers[id(optimizer)] = weakref.ref(optimizer)
        self.built_at[id(optimizer)] = site

    def on_backward(self, roots: tuple) -> None:
        self.backwards += 1
        self.last_backward_at = self.tick()

    def on_pre_step(self, optimizer: Any, closure: bool) -> None:
        if id(optimizer) not in self.optimizers:
            self.optimizers[id(optimizer)] = weakref.ref(optimizer)
        if not self.scaler_stepping:
            self.attempts[id(optimizer)] = self.attempts.get(id(optimizer), 0) + 1
        self.tick()

    def on_post_step(self, optimizer: Any) -> None:
        count = self.steps[id(optimizer)] = self.steps.get(id(optimizer), 0) + 1
        self.step = max(self.step, count)
        self.last_step_at[id(optimizer)] = self.tick()

    def on_scaler_scale(self, scaler: Any) -> None:
        if scaler.is_enabled():
            self.scaled_at[id(scaler)] = self.tick()

    def on_scaler_unscale(self, scaler: Any, optimizer: Any) -> None:
        self.unscaled.setdefault(id(scaler), set()).add(id(optimizer))

    def on_scaler_step_begin(self, scaler: Any, optimizer: Any) -> None:
        self.scaler_stepping += 1
        self.attempts[id(optimizer)] = self.attempts.get(id(optimizer), 0) + 1

    def on_scaler_step_end(self, scaler: Any, optimizer: Any) -> None:
        self.scaler_stepping -= 1

    def on_scaler_update(self, scaler: Any) -> None:
        self.scaled_at.pop(id(scaler), None)
        self.unscaled.pop(id(scaler), None)


def sampled_step(step: int) -> bool:
    """The first SAMPLE_ALL steps, then every SAMPLE_EVERY-th."""
    return step < SAMPLE_ALL or step % SAMPLE_EVERY == 0


def _depends_on_mode(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    return isinstance(module, MODE_DEPENDENT) and getattr(module, "track_running_stats", False)

