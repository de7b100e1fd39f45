"""Watch a training loop and report the first non-finite value.

One ordered pipeline per step: input -> module outputs (activations, logits) -> loss ->
gradients (in backward order) -> parameters after the optimizer step. The runtime sources hand
the watch every module call and optimizer step (``sources.HOOK_LISTENERS``); each value seen
becomes a *record* holding a reference to the tensor and a cheap on-device sentinel (a sum or a
norm, non-finite whenever the tensor is). Forward tensors wait for the step's check and are
measured there in one call, except at places where code changes them in place before it. Once
per step all sentinels are stacked and read with a single host synchronisation; only when that
trips are the records re-checked exactly, in order, and the first truly non-finite one becomes
the diagnosis. Records are dropped after each check.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import deque
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import Tensor, nn
from torch.nn.modules.loss import _Loss

from loopdoctor.runtime import sources
from loopdoctor.runtime.checks import NONFINITE_CODE, select_codes
from loopdoctor.runtime.diagnosis import (
    LIKELY_CAUSES, OUTSIDE_OPTIMIZER_CAUSE, STAGES, STALLED_SCALER_CAUSE, Diagnosis, NonFiniteError, TensorStats,
)
from loopdoctor.runtime.findings import user_site
from loopdoctor.runtime.loop_state import SAMPLE_ALL, SAMPLE_EVERY, sampled_step
from loopdoctor.runtime.recorder import Recorder
from loopdoctor.runtime.sources import BackwardPatch

# raise: NonFiniteError at the first finding; warn: a RuntimeWarning; record: only `findings`.
MODES = ("raise", "warn", "record")
GRADIENT_RECORDS = ("gradient", "grad-params")
FORWARD_STAGES = frozenset({"input", "activation", "functional"})  # records of one forward tensor
INPUT_PLACE = ("input", "input")
SOFTMAX_MODULE_TYPES = frozenset({"Softmax", "LogSoftmax", "Softmin", "Softmax2d"})
# Modules that take -inf on purpose: an attention mask, scores masked before a softmax.
MASK_CONSUMERS = SOFTMAX_MODULE_TYPES | {
    "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
    "TransformerEncoderLayer", "TransformerDecoderLayer",
}
# Built-in modules that cannot turn finite values into non-finite ones, forward or backward:
# their outputs need no check of their own (their inputs are checked where they come from).
SAFE_MODULE_TYPES = frozenset(
    {
        nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
        nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
        nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
        nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    }
)


class _Record:
    """One value seen this step; several are made per module call. The fields every record has
    are slots; the rest are class defaults, set on the few records that have them (in the
    instance ``__dict__``, made only then)."""

    __slots__ = ("stage", "where", "sentinel", "tensors", "module", "step", "batch", "evaluating", "versions", "__dict__")
    tensor_id: Optional[int] = None  # for gradients: id of the forward tensor they belong to
    params: tuple = ()  # the parameters, for grad-params and parameter records (named only if diagnosed)
    shape: tuple = ()  # for gradient records, which keep no tensor
    dtype: Optional[torch.dtype] = None
    inplace_after: Optional[str] = None  # functional: the module whose output was changed in place
    inputs: tuple = ()  # for softmax modules: what they were given
    # A deferred record whose tensor code changed in place before it was measured, and that a
    # later record of the same tensor covers: what it held is not known, and not judged.
    superseded = False

    def __init__(self, watch: "Watch", stage: str, where: str, sentinel: Optional[torch.Tensor], tensors: tuple,
                 module: Optional[str] = None):
        self.stage = stage  # input | activation | functional | loss | gradient | grad-params | parameter
        self.where = where
        # Non-finite whenever the tensors are: a 0-d tensor, or for grad-params and parameter
        # records a list of 0-d norms. None until the step's check measures it (a *deferred*
        # record: `_all_finite` measures it).
        self.sentinel = sentinel
        self.tensors = tensors
        self.module = module  # for functional inputs and gradients: the module involved
        # Where the record was made, not where it is checked (accumulation, closures, validation).
        self.step, self.batch, self.evaluating = watch._context
        # The tensors' version counters when recorded.
        count = len(tensors)
        self.versions = (tensors[0]._version,) if count == 1 else tuple([t._version for t in tensors]) if count else ()

    def is_finite(self) -> bool:
        """Were the values finite *when recorded*? A finite sentinel says so (a NaN or Inf makes
        any sum or norm non-finite); a non-finite sum may be an overflow of finite values, so the
        tensors are checked, unless code changed them in place since (``h /= ...``): then the
        sentinel is all that is known of the recorded values."""
        if self.superseded:
            return True
        values = self.sentinel if isinstance(self.sentinel, list) else [self.sentinel]
        if all(bool(torch.isfinite(value).all()) for value in values) or not self.tensors:
            return all(bool(torch.isfinite(value).all()) for value in values)
        if tuple(t._version for t in self.tensors) != self.versions:
            return False
        return all(_is_finite(t) for t in self.tensors)


def _place(record: "_Record") -> tuple:
    return record.stage, record.where, tuple(record.tensors[0].shape)


def _floating(value: Any) -> list[torch.Tensor]:
    """Floating (and complex) tensors inside nested tuples, lists, dicts and dataclasses.
    (Called on every module's arguments and outputs: the common shapes take no generator.)"""
    if type(value) is torch.Tensor:
        return [value] if value.is_floating_point() or value.is_complex() else []
    if type(value) is tuple:
        found = []
        for item in value:
            if type(item) is not torch.Tensor:
                return list(_nested_floating(value))
            if item.is_floating_point() or item.is_complex():
                found.append(item)
        return found
    return list(_nested_floating(value))


def _nested_floating(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _nested_floating(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nested_floating(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _nested_floating(getattr(value, name, None))


def _sentinel(tensor: torch.Tensor) -> torch.Tensor:
    """Non-finite whenever ``tensor`` holds a NaN or Inf (and, rarely, when a sum overflows).
    Always a 0-d float32 tensor, so that a step's sentinels stack as they are."""
    tensor = tensor.detach()
    if tensor.dtype is torch.float32 and not tensor.is_sparse:
        return tensor.sum()
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.sum(dtype=torch.float32)


def _deferrable(tensor: torch.Tensor) -> bool:
    """Can the step's check measure it, in one call with the step's other tensors? A plain
    dense real tensor with values."""
    return type(tensor) is torch.Tensor and tensor.layout is torch.strided and not tensor.is_complex() and tensor.numel() > 0


def _norms(tensors: list, order: float = 2.0, dtype: Optional[torch.dtype] = None) -> list[torch.Tensor]:
    """Each tensor's norm in one call, outside autograd (parameters require grad). The infinity
    norm is finite exactly when every value is, but costs over ten times a 2-norm on the CPU."""
    enabled = torch.is_grad_enabled()
    torch._C._set_grad_enabled(False)  # (a `no_grad` context costs more than the call itself)
    try:
        return list(torch._foreach_norm(tensors, ord=order, dtype=dtype))
    finally:
        torch._C._set_grad_enabled(enabled)


def _is_finite(tensor: torch.Tensor) -> bool:
    tensor = tensor.detach()
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    return bool(torch.isfinite(tensor).all())


class ModuleInfo:
    """What each call of a module needs to know of it, worked out once."""

    __slots__ = ("name", "type_name", "type", "safe", "is_loss", "activation_place", "functional_place")

    def __init__(self, module: nn.Module, name: str):
        self.name, self.type, self.type_name = name, type(module), type(module).__name__
        self.safe = type(module) in SAFE_MODULE_TYPES
        self.is_loss = isinstance(module, _Loss)
        self.activation_place, self.functional_place = ("activation", name), ("functional", name)


class Watch:
    """Hooks on models and optimizers that find where the first NaN or Inf entered (LD200),
    and the loop checks' recorder (LD001-LD018, LD201-LD203), fed by ``sources``."""

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        optimizer: Any = None,
        scaler: Any = None,
        *,
        mode: str = "raise",
        max_skipped_steps: int = 16,
        history: int = 24,
        stages: Optional[Iterable[str]] = None,
        select: Optional[Iterable[str]] = None,
        ignore: Iterable[str] = (),
        loop_warnings: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"watch() takes a torch.nn.Module as its model, not {type(model).__name__}")
        for item in optimizer if isinstance(optimizer, (list, tuple)) else [optimizer] if optimizer is not None else []:
            if not hasattr(item, "register_step_pre_hook"):
                raise TypeError(f"watch() takes a torch.optim.Optimizer (or a list of them) as its optimizer, not {type(item).__name__}")
        self.stages = frozenset(STAGES if stages is None else stages)
        unknown = self.stages - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        # (Asked at every module call: booleans, not set lookups.)
        self._inputs_checked = "input" in self.stages
        self._activations_checked = "activation" in self.stages
        self._logits_checked = "logit" in self.stages
        self._gradients_checked = "gradient" in self.stages
        self.mode = mode
        self.scaler = scaler
        self.max_skipped_steps = max_skipped_steps
        self.findings: list[Diagnosis] = []
        self.step = 0  # optimizer steps completed
        self.batch = -1  # training forward passes started, minus one
        self.skipped_steps = 0
        self.rank: Optional[int] = None
        self._models: list[nn.Module] = []
        self._module_infos: dict[int, tuple] = {}  # id(module) -> (its ModuleInfo, is it a watched model?)
        self._optimizers: list[Any] = []
        self._records: list[_Record] = []
        self._produced: dict[int, str] = {}  # id(tensor) -> module whose output it is, this step
        self._consumer: dict[int, str] = {}  # id(tensor) -> last module that took it as input
        self._model_outputs: set[int] = set()
        self._safe_outputs: dict[str, int] = {}  # safe module -> id of its latest output, this step
        self._alive: list[torch.Tensor] = []  # unchecked outputs whose ids the maps above use
        self._param_names: dict[int, str] = {}
        # Earlier clean steps' losses as (sentinel, element count): the sentinel of a 0-d loss is
        # its value, of a larger one its sum; and their parameter-gradient norms. Read as floats
        # only for a diagnosis.
        self._loss_history: deque = deque(maxlen=history)
        self._step_losses: list[tuple[torch.Tensor, int]] = []
        self._step_grad_norms: list[torch.Tensor] = []
        self._grad_norm_history: deque = deque(maxlen=history)
        self._scaled_losses: set[int] = set()
        self._loss_ids: set[int] = set()
        self._found_inf: list[torch.Tensor] = []  # GradScaler's flags handed to fused optimizers, this step
        self._steps_by_optimizer: dict[int, int] = {}
        self._optimizer_stepped = False  # set by each optimizer step: did `scaler.step` call it?
        self._backward_since_check = False
        self._evaluating = False  # is the forward under way an evaluation (no_grad or eval mode)?
        self._context = (0, 0, False)  # what a record made now is stamped with: step, batch, evaluating
        self._tracing_gradients = self._gradients_checked  # are activation gradients hooked at this step (`_refresh_context`)?
        self._versions: dict[int, int] = {}  # id(tensor) -> its version counter when a module made it
        self._pre_step_norms: list[tuple[tuple, torch.Tensor]] = []  # (names, norms) of parameters before each update
        self._update_since_check = False
        self._param_versions: dict[int, list] = {}  # id(optimizer) -> its parameters' versions after its last update
        self._stepping: tuple = (None, [])  # the optimizer whose step is under way, and its parameters
        self._mask_places: set[tuple] = set()  # where masks (-inf on purpose) go in, as _place() says
        # Where forward records are made, as (stage, where): places first seen this step
        # (measured when recorded), places whose tensors wait for the check, and places whose
        # tensor code changed in place before the check (measured when recorded, always).
        self._new_places: set[tuple] = set()
        self._waiting_places: set[tuple] = set()
        self._changed_places: set[tuple] = set()
        self._attached = False
        self._pending_models = [model] if model is not None else []
        self._pending_optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else ([optimizer] if optimizer is not None else [])
        codes = select_codes(select, ignore)
        self._nonfinite = NONFINITE_CODE in codes  # else no hook of the NaN/Inf pipeline is installed
        # LD200 raises in raise mode; the loop findings warn, unless the caller prints them itself.
        self.recorder = Recorder(self.findings, codes, warn=loop_warnings and mode != "record")

    @property
    def diagnosis(self) -> Optional[Diagnosis]:
        """The LD200 finding (the first non-finite value), if there is one."""
        return next((finding for finding in self.findings if isinstance(finding, Diagnosis)), None)

    # ---- attach / detach --------------------------------------------------------------------
    def attach(self) -> "Watch":
        if self._attached:
            return self
        self._attached = True
        self.recorder.rank = self.rank
        sources.add(self.recorder)
        for optimizer in self._pending_optimizers:
            self.recorder.emit("optimizer_created", optimizer, user_site())
        if not self._nonfinite:
            return self
        sources.HOOK_LISTENERS.append(self)
        BackwardPatch.add(self._on_backward)
        if self.scaler is not None:
            self._wrap_scaler()
        for model in self._pending_models:
            self.add_model(model)
        for optimizer in self._pending_optimizers:
            self.add_optimizer(optimizer)
        return self

    def detach(self) -> None:
        """Remove every hook and patch. Safe to call twice."""
        self._models.clear()
        self._module_infos.clear()
        self._optimizers.clear()
        if self in sources.HOOK_LISTENERS:
            sources.HOOK_LISTENERS.remove(self)
        BackwardPatch.remove(self._on_backward)
        for method in ("scale", "step"):
            if self.scaler is not None and method in vars(self.scaler):
                delattr(self.scaler, method)  # back to the class's method
        sources.remove(self.recorder)
        self._attached = False
        self._records.clear()
        self._produced.clear()
        self._consumer.clear()

    def __enter__(self) -> "Watch":
        return self.attach()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)

    def close(self, error: Optional[BaseException] = None) -> None:
        """Check what is still pending (the last forward pass may hold the first non-finite
        value), then detach. After ``error`` (a NaN often crashes the next operation before any
        check ran) the diagnosis is not raised but attached to it as a note, and recorded."""
        __tracebackhide__ = True  # pytest: the user's frames, not ours
        try:
            if self._attached and error is None:
                self._check(stepped=False)
                self.recorder.emit("close")
            elif self._attached and not isinstance(error, NonFiniteError):
                self._explain(error)
        finally:
            self.detach()

    def _explain(self, error: BaseException) -> None:
        diagnosis = self._pending_diagnosis()
        if diagnosis is None:
            return
        self.findings.append(diagnosis)
        note = f"loopdoctor: a non-finite value preceded this error:\n{diagnosis}"
        if hasattr(error, "add_note"):  # Python 3.11+
            error.add_note(note)
        else:
            error.args = (*error.args, note)

    def add_model(self, model: nn.Module, name: str = "") -> None:
        if any(model is known for known in self._models):
            return
        self._models.append(model)
        for module_name, module in model.named_modules(prefix=name):
            self._module_infos[id(module)] = (ModuleInfo(module, module_name or "(model)"), module is model)
        for param_name, param in model.named_parameters(prefix=name):
            self._param_names.setdefault(id(param), param_name)

    def add_optimizer(self, optimizer: Any) -> None:
        if any(optimizer is known for known in self._optimizers):
            return
        self._optimizers.append(optimizer)

    def optimizer_stepping(self, optimizer, args, kwargs):
        """Every optimizer step starts here (``sources.HOOK_LISTENERS``); a watched optimizer's is seen."""
        if any(optimizer is known for known in self._optimizers):
            return self._before_step(optimizer, args, kwargs)
        return None

    def optimizer_stepped(self, optimizer, args, kwargs) -> None:
        if any(optimizer is known for known in self._optimizers):
            self._after_step(optimizer, args, kwargs)

    # ---- hooks ------------------------------------------------------------------------------
    def _model_pre_hook(self, model, args, kwargs):
        __tracebackhide__ = True
        self._evaluating = not (torch.is_grad_enabled() and model.training)
        self._check_before_forward()
        if not self._evaluating:
            self.batch += 1
        self._refresh_context()
        for tensor in _floating((args, kwargs)):
            if self._inputs_checked:
                self._hold(_Record(self, "input", "input", None, (tensor,)), INPUT_PLACE)
            else:
                self._alive.append(tensor)
            self._produced[id(tensor)] = "input"
        return None

    def _check_before_forward(self) -> None:
        """Outside training steps, check before each forward pass; inside, once the previous
        forward's backward is done (gradient accumulation: one micro-batch's tensors held, not
        all). An evaluation's records made since the last step wait for the next step's check."""
        __tracebackhide__ = True
        if self._records and (self._evaluating or not self._optimizers or self._backward_since_check):
            self._check(stepped=False)

    def _refresh_context(self) -> None:
        self._context = (self.step, max(self.batch, 0), self._evaluating)
        # Activation gradients are hooked on the steps the loop checks sample: a hook per
        # activation is a fixed cost per module that small models feel at every step. At other
        # steps a non-finite gradient is still caught where it appears, by the parameter gradients.
        self._tracing_gradients = self._gradients_checked and sampled_step(self.step)

    def _hold(self, record: _Record, place: tuple) -> None:
        """Keep a forward record. Its tensor waits for the step's check, to be measured with the
        step's others in one call, where that is known to be safe: at a place seen before whose
        tensor no code changed in place before the check (`_learn_places`). Elsewhere it is
        measured now, as the module made it; where masks went in before, without their -inf."""
        tensor = record.tensors[0]
        if self._mask_places and _place(record) in self._mask_places:
            record.sentinel = _sentinel(torch.nan_to_num(tensor.detach(), nan=math.nan, posinf=math.inf, neginf=0.0))
        elif place not in self._waiting_places:
            record.sentinel = _sentinel(tensor)
            if place not in self._changed_places and _deferrable(tensor):
                self._new_places.add(place)
        self._records.append(record)

    def _model_output_hook(self, model, args, output):
        for tensor in _floating(output):
            self._model_outputs.add(id(tensor))
        return None

    def module_entered(self, module: nn.Module, args, kwargs) -> None:
        """Every module call starts here (``sources.HOOK_LISTENERS``); a watched model's is a forward pass."""
        known = self._module_infos.get(id(module))
        if known is not None and known[1] and known[0].type is type(module):
            self._model_pre_hook(module, args, kwargs)

    def module_left(self, module: nn.Module, args, output) -> None:
        known = self._module_infos.get(id(module))
        if known is None or known[0].type is not type(module):  # not watched (or the id of one since freed)
            return
        info, root = known
        self._observe_module(info, args, output, root)
        if root:
            self._model_output_hook(module, args, output)

    def _observe_module(self, info: "ModuleInfo", args, output, root: bool = False) -> None:
        """Record a module's functional inputs and its outputs, and hook their gradients.
        (Called at every module call: the common shapes, one tensor in and one out, take no
        detour.)"""
        produced, versions = self._produced, self._versions
        # `stages=["logit"]` alone checks what the model returns, not what its layers do.
        forward = self._activations_checked or (root and self._logits_checked)
        track_grads = self._tracing_gradients and torch.is_grad_enabled()
        if len(args) == 1 and type(args[0]) is Tensor:
            inputs = args if args[0].is_floating_point() or args[0].is_complex() else ()
        else:
            inputs = _floating(args)
        for tensor in inputs:
            key = id(tensor)
            # Made by functional code between submodules, or changed in place by it (`h /= s`).
            if key not in produced or versions.get(key, tensor._version) != tensor._version:
                self._functional_input(info, tensor, forward, track_grads)
            if track_grads:  # (only a gradient's diagnosis asks which module took a tensor)
                self._consumer[key] = info.name
        if type(output) is Tensor:
            outputs = (output,) if output.is_floating_point() or output.is_complex() else ()
        else:
            outputs = _floating(output)
        for tensor in outputs:
            key = id(tensor)
            versions[key] = tensor._version  # (an in-place module, `ReLU(inplace=True)`, changed it)
            if key in produced and not (root and forward and not self._activations_checked):
                continue  # a container returning its last child's output: keep the innermost
            produced[key] = info.name
            if info.safe or not forward:  # no check; kept alive so that its id cannot be reused within the step
                if track_grads:
                    self._safe_outputs[info.name] = key
                self._alive.append(tensor)
                if info.safe:
                    continue
            else:
                record = _Record(self, "activation", info.name, None, (tensor,), info.type_name)
                if info.type_name in SOFTMAX_MODULE_TYPES:  # to say when a whole row was masked
                    record.inputs = tuple(_floating(args))
                self._hold(record, info.activation_place)
            if track_grads and tensor.requires_grad:
                self._hook_gradient(info.name, key, tensor)

    def _functional_input(self, info: "ModuleInfo", tensor: torch.Tensor, forward: bool, track_grads: bool) -> None:
        """A module's input that no module made (functional code between submodules made it),
        or that code changed in place since a module made it."""
        key = id(tensor)
        changed_after = self._produced.get(key)
        self._produced[key], self._versions[key] = "functional", tensor._version
        if forward:
            record = _Record(self, "functional", info.name, None, (tensor,), info.type_name)
            record.inplace_after = changed_after
            self._hold(record, info.functional_place)
        else:
            self._alive.append(tensor)
        if track_grads and tensor.requires_grad:
            self._hook_gradient(info.name, key, tensor)

    def _hook_gradient(self, name: str, tensor_id: int, tensor: torch.Tensor) -> None:
        node = tensor.grad_fn
        if node is None:  # a leaf
            tensor.register_hook(lambda grad: self._on_gradients(name, tensor_id, 0, (grad,)))
        else:  # the node's own hook, which reads this output's gradient: cheaper than a tensor hook
            node.register_prehook(functools.partial(self._on_gradients, name, tensor_id, tensor.output_nr))

    def _on_gradients(self, name: str, tensor_id: int, index: int, grads: tuple) -> None:
        # Holding every activation gradient until the step ends would raise peak memory and
        # cost about 6% of a step (benchmarks/RESULTS.md); keep only the sentinel.
        grad = grads[index]
        if grad is not None:
            record = _Record(self, "gradient", name, _sentinel(grad), ())
            record.tensor_id, record.shape, record.dtype = tensor_id, tuple(grad.shape), grad.dtype
            self._records.append(record)

    def _on_backward(self, tensors) -> None:
        self._backward_since_check = True
        roots = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
        for root in roots:
            if isinstance(root, torch.Tensor) and id(root) not in self._scaled_losses:
                self._record_loss(root)

    def _record_loss(self, loss: torch.Tensor) -> None:
        if id(loss) in self._loss_ids:  # a loss module's output, then backward() on it
            return
        self._loss_ids.add(id(loss))
        if "loss" in self.stages and (loss.is_floating_point() or loss.is_complex()):
            sentinel = loss.detach() if loss.dtype is torch.float32 and not loss.dim() else _sentinel(loss)
            self._records.append(_Record(self, "loss", "loss", sentinel, (loss,)))
            self._step_losses.append((sentinel, loss.numel()))

    def _wrap_scaler(self) -> None:
        scale, step = scaler_methods(self, type(self.scaler).scale, type(self.scaler).step)
        self.scaler.scale = scale.__get__(self.scaler)
        self.scaler.step = step.__get__(self.scaler)

    def _on_scaler_step(self, scaler, stepped: bool) -> None:
        """After ``scaler.step(optimizer)``: when it skipped the optimizer (Inf or NaN in the
        gradients), check what the skipped step left and count the skip now, not at the next
        real step; a fused optimizer, stepped even then, was checked by its own hook."""
        self.scaler = scaler
        if not stepped and scaler.is_enabled():
            self._check(stepped=False, scaler_skipped=True)

    def _before_step(self, optimizer, args, kwargs):
        # Fused optimizers are stepped even on GradScaler's overflow steps: the kernel reads
        # ``found_inf`` and skips the update itself.
        found_inf = getattr(optimizer, "found_inf", None)
        if isinstance(found_inf, torch.Tensor):
            self._found_inf.append(found_inf)
        self._update_since_check = True
        params = _parameters(optimizer)
        self._stepping = (optimizer, params)
        self._measure_changed_parameters(optimizer, params)
        # The hook's ``args`` start with the optimizer itself: step(self, closure=None).
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._record_gradients(params)
            return None

        # `step(closure)` (LBFGS, Lightning): the gradients exist only once the closure ran.
        def closure_then_record():
            loss = closure()
            self._record_gradients(params)
            return loss

        return args[:1], {**{k: v for k, v in kwargs.items() if k != "closure"}, "closure": closure_then_record}

    def _measure_changed_parameters(self, optimizer, params: list[torch.Tensor]) -> None:
        """What the forward ran with, for parameters changed since the optimizer's last update
        (or never seen): the update that follows may make them non-finite, and then the forward
        is not to blame."""
        before, now = self._param_versions.get(id(optimizer)), [p._version for p in params]
        if before == now or not self._activations_checked:
            return
        changed = params if before is None or len(before) != len(now) else [p for p, a, b in zip(params, now, before) if a != b]
        largest = _norms(changed, math.inf)
        self._pre_step_norms.append((self._names(changed), torch.stack([n.float() for n in largest])))

    def _record_gradients(self, params: list[torch.Tensor]) -> None:
        if not self._gradients_checked:
            return
        params = [p for p in params if p.grad is not None]
        if params:
            grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in params]
            norms = _norms(grads)  # (2-norms, for the gradient-norm history)
            record = _Record(self, "grad-params", "gradients", norms, tuple(grads))
            record.params = tuple(params)
            self._records.append(record)
            self._step_grad_norms.append(norms)

    def _after_step(self, optimizer, args, kwargs):
        __tracebackhide__ = True
        stepping, params = self._stepping
        if stepping is not optimizer:
            params = _parameters(optimizer)
        self._stepping = (None, [])
        if params and "parameter" in self.stages:
            kept = tuple(params)
            record = _Record(self, "parameter", "parameters", _norms(params), kept)
            record.params = kept
            self._records.append(record)
        self._optimizer_stepped = True
        self._param_versions[id(optimizer)] = [p._version for p in params]
        skipped_before = self.skipped_steps
        self._check(stepped=True)
        if self.skipped_steps <= skipped_before:  # a fused optimizer's skipped step is no step
            # With several optimizers (a GAN's two), one training step steps each once.
            count = self._steps_by_optimizer.get(id(optimizer), 0) + 1
            self._steps_by_optimizer[id(optimizer)] = count
            self.step = max(self.step, count)
            self._refresh_context()
        return None

    def _names(self, params) -> tuple:
        return tuple(self._param_names.get(id(p), f"param[{i}]") for i, p in enumerate(params))

    # ---- the once-per-step check --------------------------------------------------------------
    def _check(self, stepped: bool, scaler_skipped: bool = False) -> None:
        __tracebackhide__ = True
        if not self._records and not scaler_skipped:
            return
        diagnosis = self._pending_diagnosis(stepped, scaler_skipped)
        if diagnosis is not None:
            self._report(diagnosis)

    def _pending_diagnosis(self, stepped: bool = False, scaler_skipped: bool = False) -> Optional[Diagnosis]:
        """The diagnosis of the first non-finite record held, if any; the records are then
        dropped. A GradScaler's overflow is no finding, unless its skips run past
        ``max_skipped_steps``: then the scaler has stalled and that is the finding."""
        records = self._records
        try:
            first = None if self._all_finite(records) else next((r for r in records if not r.is_finite() and not self._is_mask(r)), None)
            skip = scaler_skipped or (stepped and self._fused_step_skipped())
            if first is not None and not (first.stage in GRADIENT_RECORDS and self._scaler_on() and (skip or not stepped)):
                return self._diagnose(first)
            if first is None:  # (or a sum overflowed, but every value is finite)
                self._loss_history.extend(self._step_losses)
                self._grad_norm_history.extend(self._step_grad_norms)
            if not skip:
                if stepped:
                    self.skipped_steps = 0
                return None  # an overflow seen before its step: `scaler.step` will count it
            self.skipped_steps += 1
            return self._stall_diagnosis() if self.skipped_steps == self.max_skipped_steps else None  # once a stall
        finally:
            # (Cleared in place: `_observe_module` takes these very objects into locals.)
            records.clear()
            self._produced.clear()
            self._consumer.clear()
            self._model_outputs.clear()
            self._safe_outputs.clear()
            self._alive.clear()
            self._step_losses.clear()
            self._step_grad_norms.clear()
            self._scaled_losses.clear()
            self._loss_ids.clear()
            self._found_inf.clear()
            self._backward_since_check = False
            self._versions.clear()
            self._pre_step_norms.clear()
            self._update_since_check = False

    def _all_finite(self, records: list[_Record]) -> bool:
        """Measure the records that waited for the check, in one call (each tensor's 2-norm,
        summed in float32: non-finite whenever a value is, and, rarely, when finite values
        overflow, which `is_finite` then rules out), then read every sentinel of the step back at
        once per device: stacked, as a list (on small tensors `isfinite().all()` costs three
        times the copy)."""
        sentinels: list[torch.Tensor] = []
        waiting: list[_Record] = []
        changed = False  # did code change a waiting record's tensor in place?
        for record in records:
            sentinel = record.sentinel
            if sentinel is None:
                waiting.append(record)
                changed = changed or record.tensors[0]._version != record.versions[0]
            elif type(sentinel) is list:
                sentinels.extend(sentinel)
            else:
                sentinels.append(sentinel)
        if waiting:
            sentinels.extend(self._measure_waiting(waiting))
        if self._new_places or changed:
            self._learn_places(records, {id(record) for record in waiting})
        if not sentinels:
            return True
        try:
            return all(map(math.isfinite, torch.stack(sentinels).tolist()))
        except RuntimeError:  # on several devices
            by_device: dict[torch.device, list[torch.Tensor]] = {}
            for sentinel in sentinels:
                by_device.setdefault(sentinel.device, []).append(sentinel)
            return all(all(map(math.isfinite, torch.stack(group).tolist())) for group in by_device.values())

    @staticmethod
    def _measure_waiting(waiting: list[_Record]) -> list[torch.Tensor]:
        tensors = [record.tensors[0] for record in waiting]
        try:
            norms = _norms(tensors, dtype=torch.float32)
        except Exception:  # (tensors on several devices, of a layout or type the call does not take)
            norms = [_sentinel(tensor) for tensor in tensors]
        for record, norm in zip(waiting, norms):
            record.sentinel = norm
        return norms

    def _learn_places(self, records: list[_Record], waited: set[int]) -> None:
        """Places seen for the first time wait for the check from now on, unless code changed
        their tensor in place before it (`h /= s`, `out += identity`, `ReLU(inplace=True)`): then
        they are measured when recorded, always. A record that waited although its tensor was
        changed (code that changes it only sometimes) shows the changed values; where a later
        record of the same tensor holds those, the earlier one is not judged at all."""
        later: set[int] = set()  # ids of tensors that a later record holds
        for record in reversed(records):
            if record.stage not in FORWARD_STAGES:
                continue
            tensor, place = record.tensors[0], (record.stage, record.where)
            if tensor._version != record.versions[0]:
                self._changed_places.add(place)
                self._waiting_places.discard(place)
                record.superseded = id(record) in waited and id(tensor) in later
            elif place in self._new_places and place not in self._changed_places:
                self._waiting_places.add(place)
            later.add(id(tensor))
        self._new_places.clear()

    def _is_mask(self, record: _Record) -> bool:
        """-inf on purpose: a tensor going into a module whose only non-finite values are -inf,
        and that is a pure additive mask (0 and -inf: `generate_square_subsequent_mask`) or goes
        into a softmax or an attention module (masked scores). NaN and +inf never are. Once
        seen, the same place's later masks are summed without their -inf, so they do not trip
        the step's check again."""
        if record.stage not in ("input", "functional") or not record.tensors:
            return False
        tensor = record.tensors[0].detach()
        if bool(torch.isnan(tensor).any()) or bool(torch.isposinf(tensor).any()):
            return False
        is_additive_mask = not bool(tensor[torch.isfinite(tensor)].any())
        consumer = record.module or ""
        if is_additive_mask or consumer in MASK_CONSUMERS or "attn" in record.where.lower() or "attention" in record.where.lower():
            self._mask_places.add(_place(record))
            return True
        return False

    def _scaler_on(self) -> bool:
        return self.scaler is not None and getattr(self.scaler, "is_enabled", lambda: True)()

    def _fused_step_skipped(self) -> bool:
        """A fused optimizer is stepped even when GradScaler found Inf: its kernel reads the flag."""
        return any(bool(flag.sum() > 0) for flag in self._found_inf)

    def _report(self, diagnosis: Diagnosis) -> None:
        __tracebackhide__ = True
        if any(isinstance(finding, Diagnosis) for finding in self.findings):
            return  # LD200 is the *first* non-finite value; what follows from it is no news
        site = user_site()
        diagnosis.filename, diagnosis.line = site.filename, site.line
        self.findings.append(diagnosis)
        if self.mode == "raise":
            raise NonFiniteError(diagnosis)
        if self.mode == "warn":
            warnings.warn(str(diagnosis), RuntimeWarning, stacklevel=3)

    # ---- building the diagnosis ------------------------------------------------------------
    def _diagnose(self, record: _Record) -> Diagnosis:
        stage, where, detail, module_type = record.stage, record.where, "", record.module
        stats: Optional[TensorStats] = None
        tensor = record.tensors[0] if record.tensors else None
        bad_gradients: list[str] = []
        bad_state: list[str] = []
        stats_of: Optional[str] = None
        if stage in ("functional", "activation"):
            owner_module = where.rpartition(".")[0] or "(model)" if stage == "functional" else where
            bad_parameter = self._non_finite_parameter(owner_module)
            if bad_parameter is not None:
                return self._parameter_changed_outside_optimizer(record, owner_module, *bad_parameter)
        if stage == "activation" and tensor is not None and (id(tensor) in self._loss_ids or (tensor.dim() == 0 and id(tensor) in self._model_outputs)):
            # The tensor backward() runs on, or a scalar the model returns: a loss computed in forward.
            stage, detail, module_type = "loss", f"a loss computed inside the forward of `{where}`, which returned it", None
            where = "loss"
        elif stage == "functional":
            parent = where.rpartition(".")[0] or "(model)"
            owner = "the model's own forward" if parent == "(model)" else f"the forward of `{parent}`"
            if record.inplace_after:
                detail = f"changed in place by code in {owner} after `{record.inplace_after}` made it, and first seen entering `{where}`"
            else:
                detail = f"made by code in {owner} (not a submodule) and first seen entering `{where}`"
            stage, where, module_type = "activation", parent, None
        elif stage == "activation" and record.inputs:
            detail = _masked_rows(record.inputs[0])
        elif stage == "activation" and id(tensor) in self._model_outputs and where == "(model)":
            stage = "logit"  # made by the model's own forward code, not by a submodule
        elif stage == "gradient":
            producer = self._consumer.get(record.tensor_id)
            for _ in range(len(self._safe_outputs)):  # safe modules pass gradients on unharmed
                if producer not in self._safe_outputs:
                    break
                producer = self._consumer.get(self._safe_outputs[producer])
            if producer is None:
                producer = "loss" if record.tensor_id in self._model_outputs else (where.rpartition(".")[0] or "(model)")
            detail = f"the backward of `{producer}` turned finite incoming gradients into a non-finite gradient at the output of `{where}`"
            if producer == "loss":
                detail = f"the loss computation's backward sent a non-finite gradient into the model's output (`{where}`)"
            bad = self._bad_gradients()
            bad_gradients = [name for name, _ in bad]
            # The activation gradient itself is not kept: count the non-finite parameter gradient
            # nearest to it (the producer's, then the receiving module's, then the last one).
            nearest = [pair for module in (producer, where) for pair in bad if pair[0].startswith(f"{module}.")]
            where, module_type = producer, None
            if bad:
                stats_of, tensor = (nearest or bad[::-1])[0]
                stats_of += ".grad"
            else:
                stats = TensorStats(list(record.shape), str(record.dtype).replace("torch.", ""), None, None, None, None, None)
        elif stage == "grad-params":
            stage = "gradient"
            index = next(i for i, t in enumerate(record.tensors) if not _is_finite(t))
            names = self._names(record.params)
            where, tensor = names[index], record.tensors[index]
            stats_of = f"{where}.grad"
            bad_gradients = [name for name, t in zip(names, record.tensors) if not _is_finite(t)]
            if not sampled_step(record.step):
                detail = (f"caught at the parameter: which module's backward made it is traced on the first {SAMPLE_ALL} "
                          f"steps and every {SAMPLE_EVERY}th after, not at this one")
        elif stage == "parameter":
            index = next(i for i, t in enumerate(record.tensors) if not _is_finite(t))
            where, tensor = self._names(record.params)[index], record.tensors[index]
            bad_state = self._bad_optimizer_state()
            grad = tensor.grad
            detail = "its gradient was finite; the update made it non-finite" if grad is None or _is_finite(grad) else ""
        return self._make_diagnosis(
            record, stage=stage, where=where, stats=tensor_stats(tensor) if tensor is not None else stats,
            cause=LIKELY_CAUSES[stage], detail=detail, module_type=module_type,
            bad_gradients=bad_gradients, bad_optimizer_state=bad_state, stats_of=stats_of,
        )

    def _make_diagnosis(self, record: Optional[_Record], **fields) -> Diagnosis:
        """Step, batch and phase of the record (where the value appeared); the loss history up to
        and including the step that blew up."""
        unchecked = [s for s in STAGES[: STAGES.index(fields["stage"])] if s not in self.stages and not (s == "logit" and "activation" in self.stages)]
        if unchecked:  # (--stages): the value may have entered before the first stage looked at
            fields["cause"] = (
                f"not known: the {', '.join(unchecked)} stage(s) were not checked, so the value may have "
                f"entered there; check every stage to find where. If it entered here: {fields['cause']}"
            )
        return Diagnosis(
            step=record.step if record else self.step, batch=record.batch if record else max(self.batch, 0),
            evaluating=record.evaluating if record else False, rank=self.rank,
            loss_history=[float(total) / count for total, count in (*self._loss_history, *self._step_losses)],
            grad_norm_history=[float(torch.linalg.vector_norm(torch.stack(norms).float())) for norms in self._grad_norm_history],
            **fields,
        )

    def _non_finite_parameter(self, module: str) -> Optional[tuple[str, torch.Tensor]]:
        """A parameter of the module itself (not of its children) that was non-finite when it
        ran: before this step's update, where one has happened since, else now. (Only
        parameters changed outside the optimizer are measured before the update; a change
        through ``.data`` bypasses the version counter and is not seen there.)"""
        prefix = "" if module == "(model)" else module + "."
        stepped = self._update_since_check
        bad_before_update = {
            name for names, norms in self._pre_step_norms for name, norm in zip(names, norms.tolist()) if not math.isfinite(norm)
        }
        for model in self._models:
            for param in model.parameters():
                name = self._param_names.get(id(param), "")
                if not name.startswith(prefix) or "." in name[len(prefix):]:
                    continue
                if (name in bad_before_update) if stepped else not _is_finite(param):
                    return name, param
        return None

    def _parameter_changed_outside_optimizer(self, record: _Record, module: str, name: str, param: torch.Tensor) -> Diagnosis:
        return self._make_diagnosis(
            record, stage="parameter", where=name, stats=tensor_stats(param), cause=OUTSIDE_OPTIMIZER_CAUSE,
            detail=f"`{name}` was already non-finite when `{module}` ran, before any update of this step",
        )

    def _stall_diagnosis(self) -> Diagnosis:
        """GradScaler skipped ``max_skipped_steps`` steps in a row: a gradient that is non-finite
        at every step (not an occasional overflow), and training that has stopped."""
        bad = self._bad_gradients()
        where, grad = bad[0] if bad else ("gradients", None)
        scale = float(self.scaler.get_scale()) if self.scaler is not None else float("nan")
        return self._make_diagnosis(
            None, stage="gradient", where=where, stats=tensor_stats(grad) if grad is not None else None,
            stats_of=f"{where}.grad" if grad is not None else None, cause=STALLED_SCALER_CAUSE,
            detail=f"GradScaler skipped the last {self.skipped_steps} optimizer steps in a row "
                   f"(max_skipped_steps={self.max_skipped_steps}) and its scale has fallen to {scale:.3g}",
            bad_gradients=[name for name, _ in bad],
        )

    def _bad_gradients(self) -> list[tuple[str, torch.Tensor]]:
        bad = []
        for model in self._models:
            for name, param in model.named_parameters():
                if param.grad is not None and not _is_finite(param.grad):
                    bad.append((name, param.grad))
        return bad

    def _bad_optimizer_state(self) -> list[str]:
        bad = []
        for optimizer in self._optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.is_floating_point() and not _is_finite(value):
                        bad.append(f"{self._param_names.get(id(param), '?')}.{key}")
        return bad


def _masked_rows(scores: torch.Tensor) -> str:
    """What a softmax's NaN comes from when some of its rows are masked entirely."""
    if scores.dim() == 0:
        return ""
    rows = int(torch.isneginf(scores.detach()).all(dim=-1).sum())
    if not rows:
        return ""
    return f"{rows} row(s) of its input are -inf everywhere along the last dimension (masked entirely): their softmax is 0/0 = NaN"


def _parameters(optimizer) -> list[torch.Tensor]:
    return [param for group in optimizer.param_groups for param in group["params"]]


def tensor_stats(tensor: torch.Tensor) -> TensorStats:
    values = tensor.detach()
    if values.is_sparse:
        values = values.coalesce().values()
    if values.is_complex():
        values = torch.view_as_real(values)
    values = values.float() if values.dtype in (torch.float16, torch.bfloat16) else values
    finite_mask = torch.isfinite(values)
    finite = values[finite_mask]
    bad = (~finite_mask).flatten().nonzero()
    first_bad = [int(i) for i in torch.unravel_index(bad[0, 0], values.shape)] if len(bad) and values.dim() else None
    return TensorStats(
        shape=list(tensor.shape),
        dtype=str(tensor.dtype).replace("torch.", ""),
        nan=int(torch.isnan(values).sum()),
        posinf=int(torch.isposinf(values).sum()),
        neginf=int(torch.isneginf(values).sum()),
        finite_min=float(finite.min()) if finite.numel() else None,
        finite_max=float(finite.max()) if finite.numel() else None,
        first_bad_index=first_bad,
    )


def scaler_methods(watch: Watch, original_scale, original_step):
    """GradScaler's ``scale`` and ``step``, observed: the loss is recorded *before* it is scaled
    (a scaled loss may overflow on purpose), and a step the scaler skipped is known at once."""

    def scale(scaler, outputs):
        watch.scaler = scaler
        for loss in _floating(outputs):
            watch._record_loss(loss)
        scaled = original_scale(scaler, outputs)
        watch._scaled_losses.update(id(t) for t in _floating(scaled))
        return scaled

    def step(scaler, optimizer, *args, **kwargs):
        __tracebackhide__ = True
        watch._optimizer_stepped = False
        result = original_step(scaler, optimizer, *args, **kwargs)
        watch._on_scaler_step(scaler, stepped=watch._optimizer_stepped)
        return result

    return scale, step


def watch(model: Optional[nn.Module] = None, optimizer: Any = None, scaler: Any = None, **options) -> Watch:
    """``with loopdoctor.watch(model, optimizer): ...`` around an unchanged loop."""
    return Watch(model, optimizer, scaler, **options)
