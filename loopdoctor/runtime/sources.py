"""The hook sources of the loop checks: where each event comes from.

Installed once for all active recorders (nested watches share them) and removed, in reverse
order, when the last one detaches, exceptions included. Each patched entry point calls the
original unchanged, so numerics are bitwise the same:

- ``torch.nn.functional``'s cross-entropy, NLL, BCE-with-logits and dropout functions (the loss
  and dropout modules call them too);
- ``Optimizer.__init__`` / ``zero_grad``, ``Module.zero_grad`` / ``load_state_dict``, the
  gradient-clipping functions, GradScaler's ``scale`` / ``unscale_`` / ``step`` / ``update``, and
  every learning-rate scheduler's ``step``;
- ``nn.Module.__call__`` (every module's forward, where global forward hooks would push every
  module off PyTorch's fast path), PyTorch's global optimizer-step hooks, and
  ``torch.autograd.backward``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.compiler import is_compiling
from torch.nn.modules.loss import _Loss
from torch.optim import lr_scheduler
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from loopdoctor.runtime.findings import user_site

LOSS_FUNCTIONS = {"cross_entropy": "cross_entropy", "nll_loss": "nll_loss", "binary_cross_entropy_with_logits": "bce_with_logits"}
DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
CLIP_FUNCTIONS = ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm")

RECORDERS: list = []  # the active recorders, outermost first
# Whole-process watches of the non-finite pipeline (GlobalWatch): fed the same module and
# optimizer hooks, with the hooks' own arguments, before the recorders' events.
HOOK_LISTENERS: list = []
RUNNING: list[nn.Module] = []  # modules whose forward is under way, outermost first
# event -> (recorder, handler) of every active recorder: an event costs one call per handler.
HANDLERS: dict[str, list[tuple]] = {}
_undo: list[Callable[[], None]] = []


def add(recorder: Any) -> None:
    recorder.state.running = RUNNING
    if not RECORDERS:
        _install()
    RECORDERS.append(recorder)
    _collect_handlers()


def remove(recorder: Any) -> None:
    if recorder in RECORDERS:
        RECORDERS.remove(recorder)
    _collect_handlers()
    if not RECORDERS:
        while _undo:
            _undo.pop()()
        RUNNING.clear()


def _collect_handlers() -> None:
    HANDLERS.clear()
    for recorder in RECORDERS:
        for event, handlers in recorder.handlers.items():
            HANDLERS.setdefault(event, []).extend((recorder, handler) for handler in handlers)


def emit(event: str, *args: Any) -> None:
    """``Recorder.emit`` for every active recorder, without the call per recorder."""
    if is_compiling():
        return  # inside a region torch.compile traces: the compiled code is not observed
    for recorder, handler in HANDLERS.get(event, ()):
        try:
            handler(*args)
        except Exception as error:  # a check must never break the user's training
            recorder.internal_error(handler, error)


class BackwardPatch:
    """``torch.autograd.backward`` (which ``Tensor.backward`` calls) tells its listeners its roots
    before it runs: the loop checks' recorders, and each watch's non-finite pipeline."""

    original = None
    listeners: list[Callable[[Any], None]] = []

    @classmethod
    def add(cls, listener: Callable[[Any], None]) -> None:
        if cls.original is None:
            cls.original = torch.autograd.backward
            torch.autograd.backward = cls._backward
        cls.listeners.append(listener)

    @classmethod
    def remove(cls, listener: Callable[[Any], None]) -> None:
        if listener in cls.listeners:
            cls.listeners.remove(listener)
        if not cls.listeners and cls.original is not None:
            torch.autograd.backward = cls.original
            cls.original = None

    @staticmethod
    def _backward(tensors, *args, **kwargs):
        for listener in list(BackwardPatch.listeners):
            listener(tensors)
        return BackwardPatch.original(tensors, *args, **kwargs)


def _on_backward(tensors: Any) -> None:
    emit("backward", (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors))


# ---- installing -----------------------------------------------------------------------------
def _install() -> None:
    BackwardPatch.add(_on_backward)
    _undo.append(lambda: BackwardPatch.remove(_on_backward))
    for name, kind in LOSS_FUNCTIONS.items():
        _patch(F, name, _loss_wrapper(kind))
    for name in DROPOUT_FUNCTIONS:
        _patch(F, name, _dropout_wrapper)
    for owner in (torch.nn.utils, torch.nn.utils.clip_grad):
        for name in CLIP_FUNCTIONS:
            if hasattr(owner, name):
                _patch(owner, name, _clip_wrapper)
    _patch(torch.optim.Optimizer, "__init__", _optimizer_init_wrapper)
    _patch(torch.optim.Optimizer, "zero_grad", _event_before("zero_grad"))
    _patch(nn.Module, "zero_grad", _event_before("module_zero_grad"))
    _patch(nn.Module, "load_state_dict", _load_state_dict_wrapper)
    _patch_grad_scaler(torch.amp.GradScaler)
    for scheduler in _scheduler_classes():
        _patch(scheduler, "step", _scheduler_step_wrapper)
    _patch(nn.Module, "__call__", _module_call_wrapper)
    for handle in (
        register_optimizer_step_pre_hook(_before_step),
        register_optimizer_step_post_hook(_after_step),
    ):
        _undo.append(handle.remove)


def _patch(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    own = name in vars(owner)
    original = vars(owner)[name] if own else getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(make_wrapper(original)))
    _undo.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))


def _scheduler_classes() -> list[type]:
    classes = [lr_scheduler.LRScheduler]
    for value in vars(lr_scheduler).values():
        if isinstance(value, type) and issubclass(value, lr_scheduler.LRScheduler) and "step" in vars(value) and value not in classes:
            classes.append(value)
    return classes


# ---- the wrappers ---------------------------------------------------------------------------
def _loss_wrapper(kind: str):
    def make(original):
        def loss(input, *args, **kwargs):
            if RECORDERS:
                emit("loss", kind, input)
            return original(input, *args, **kwargs)
        return loss
    return make


def _dropout_wrapper(original):
    def dropout(input, p=0.5, training=True, inplace=False):
        if RECORDERS and training and p > 0 and RUNNING:
            emit("dropout", p)
        return original(input, p, training, inplace)
    return dropout


def _clip_wrapper(original):
    def clip(parameters, *args, **kwargs):
        parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        if RECORDERS:
            emit("clip", parameters)
        return original(parameters, *args, **kwargs)
    return clip


def _optimizer_init_wrapper(original):
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if RECORDERS:
            emit("optimizer_created", self, user_site())
    return __init__


def _event_before(event: str):
    def make(original):
        def method(self, *args, **kwargs):
            if RECORDERS:
                emit(event, self)
            return original(self, *args, **kwargs)
        return method
    return make


def _load_state_dict_wrapper(original):
    def load_state_dict(self, state_dict, *args, **kwargs):
        if RECORDERS:
            emit("load_state_dict", self, state_dict)
        return original(self, state_dict, *args, **kwargs)
    return load_state_dict


def _scheduler_step_wrapper(original):
    def step(self, *args, **kwargs):
        if RECORDERS and getattr(self, "_step_count", 1) != 0:  # (0: the step its constructor takes)
            emit("scheduler_step", self)
        return original(self, *args, **kwargs)
    return step


def _patch_grad_scaler(scaler_class: type) -> None:
    def after(event: str, *, with_optimizer: bool = False):
        def make(original):
            def method(self, *args, **kwargs):
                result = original(self, *args, **kwargs)
                if RECORDERS:
                    emit(event, self, *(args[:1] if with_optimizer else ()))
                return result
            return method
        return make

    def step_wrapper(original):
        def step(self, optimizer, *args, **kwargs):
            emit("scaler_step_begin", self, optimizer)
            try:
                return original(self, optimizer, *args, **kwargs)
            finally:
                emit("scaler_step_end", self, optimizer)
        return step

    _patch(scaler_class, "scale", after("scaler_scale"))
    _patch(scaler_class, "unscale_", after("scaler_unscale", with_optimizer=True))
    _patch(scaler_class, "update", after("scaler_update"))
    _patch(scaler_class, "step", step_wrapper)


# ---- every module call and optimizer step ----------------------------------------------------
def _module_call_wrapper(original):
    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # pytest: the user's frames, not ours
        if is_compiling():  # inside a region torch.compile traces: the compiled code is not observed
            return original(self, *args, **kwargs)
        for listener in HOOK_LISTENERS:
            listener.module_entered(self, args, kwargs)
        if not RUNNING and not isinstance(self, _Loss):
            emit("root_forward", self)
        RUNNING.append(self)
        try:
            output = original(self, *args, **kwargs)
        except BaseException:
            _leave_module(self, args, None)
            raise
        if RUNNING and RUNNING[-1] is self:  # (what _leave_module does, without the call)
            RUNNING.pop()
        for listener in HOOK_LISTENERS:
            listener.module_left(self, args, output)
        return output
    return __call__


def _leave_module(module: nn.Module, args: Any, output: Any) -> None:
    if RUNNING and RUNNING[-1] is module:
        RUNNING.pop()
    for listener in HOOK_LISTENERS:
        listener.module_left(module, args, output)


def _before_step(optimizer: Any, args: Any, kwargs: Any) -> Any:
    """A listener may hand back new ``(args, kwargs)`` (a closure that records after it runs)."""
    changed = None
    for listener in HOOK_LISTENERS:
        result = listener.optimizer_stepping(optimizer, args, kwargs)
        if result is not None:
            changed = args, kwargs = result
    emit("pre_step", optimizer, kwargs.get("closure", args[1] if len(args) > 1 else None) is not None)
    return changed


def _after_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    emit("post_step", optimizer)  # first: the non-finite pipeline may raise, the step is done either way
    for listener in HOOK_LISTENERS:
        listener.optimizer_stepped(optimizer, args, kwargs)
