"""Watching without being handed a model: every module, optimizer and GradScaler that runs.

Used by ``loopdoctor run`` and ``pytest --loopdoctor``. The loop checks' sources (``sources.py``:
``nn.Module.__call__`` and PyTorch's global optimizer hooks) see everything and hand each call to
this watch too; where ``watch(model, optimizer)`` takes only its own model's modules and its own
optimizers, this one takes all. The outermost module running is a *root* (the user's model, or a
DDP wrapper around it) and names its submodules. A loss module called at top level is the loss
stage.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.modules.loss import _Loss

from loopdoctor.runtime.sources import RUNNING
from loopdoctor.runtime.watch import INPUT_PLACE, ModuleInfo, Watch, _floating, _Record, scaler_methods


class GlobalWatch(Watch):
    def __init__(self, **options: Any):
        super().__init__(None, None, None, **options)
        self._module_names: dict[int, str] = {}  # id(module) -> dotted name in its root
        self._primary_root: Optional[int] = None
        self._root: Optional[nn.Module] = None  # the outermost module of the forward under way
        self._seen_modules: dict[int, ModuleInfo] = {}  # id(module) -> what _first_seen says of it
        self._original_scaler_methods = None
        self.rank = _rank()

    def attach(self) -> "GlobalWatch":
        if self._attached:
            return self
        super().attach()
        if not self._nonfinite:
            return self
        self._patch_grad_scaler()
        return self

    def detach(self) -> None:
        # Ours first: the originals saved here may be the loop sources' wrappers, removed next.
        if self._original_scaler_methods is not None:
            torch.amp.GradScaler.scale, torch.amp.GradScaler.step = self._original_scaler_methods
            self._original_scaler_methods = None
        super().detach()

    # ---- modules ----------------------------------------------------------------------------
    def module_entered(self, module: nn.Module, args, kwargs) -> None:
        if not RUNNING and not isinstance(module, _Loss):  # (RUNNING: the modules running around it)
            self._enter_root(module, args)

    def _enter_root(self, root: nn.Module, args) -> None:
        self._root = root
        if id(root) not in self._module_names:
            self._models.append(root)
            self._learn_names(root)
        if self._primary_root is None:
            self._primary_root = id(root)
        evaluating = not torch.is_grad_enabled() or not root.training
        self._evaluating = evaluating
        self._check_before_forward()
        if id(root) == self._primary_root and not evaluating:
            self.batch += 1
        self._refresh_context()
        for tensor in _floating(args):
            self._produced.setdefault(id(tensor), "input")
            if self._inputs_checked:
                self._hold(_Record(self, "input", "input", None, (tensor,)), INPUT_PLACE)
            else:
                self._alive.append(tensor)

    def module_left(self, module: nn.Module, args, output) -> None:
        seen = self._seen_modules.get(id(module))
        if seen is None or seen.type is not type(module):  # (or the id of one since freed)
            seen = self._first_seen(module)
        root = not RUNNING
        if root and seen.is_loss:
            for loss in _floating(output):
                self._record_loss(loss)
            return
        self._observe_module(seen, args, output, root)
        if root:
            self._model_output_hook(module, args, output)

    def _first_seen(self, module: nn.Module) -> ModuleInfo:
        """What its later calls need to know of it, kept."""
        if id(module) not in self._module_names and self._root is not None:
            self._learn_names(self._root)  # a module added after the root was first seen
        # (A module built on the fly inside a forward is no child: its type names it.)
        info = self._seen_modules[id(module)] = ModuleInfo(module, self._module_names.get(id(module), type(module).__name__))
        return info

    def _learn_names(self, root: nn.Module) -> None:
        for name, module in root.named_modules():
            self._module_names.setdefault(id(module), name or "(model)")
        for name, param in root.named_parameters():
            self._param_names.setdefault(id(param), name)

    # ---- optimizers and scalers ----------------------------------------------------------------
    def optimizer_stepping(self, optimizer, args, kwargs):
        if optimizer not in self._optimizers:  # (optimizers compare by identity)
            self._optimizers.append(optimizer)
        return self._before_step(optimizer, args, kwargs)

    def optimizer_stepped(self, optimizer, args, kwargs) -> None:
        self._after_step(optimizer, args, kwargs)

    def _patch_grad_scaler(self) -> None:
        """Every GradScaler is observed as ``watch(..., scaler=)`` observes its own."""
        originals = torch.amp.GradScaler.scale, torch.amp.GradScaler.step
        self._original_scaler_methods = originals
        torch.amp.GradScaler.scale, torch.amp.GradScaler.step = scaler_methods(self, *originals)


def _rank() -> Optional[int]:
    """This process's rank under torchrun / torch.distributed, None when not distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return int(os.environ["RANK"])
    return None
