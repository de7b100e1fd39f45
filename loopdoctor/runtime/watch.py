"""Watch a training loop and report the first non-finite value.

One ordered pipeline per step: input -> module outputs (activations, logits) -> loss ->
gradients (in backward order) -> parameters after the optimizer step. Every hook appends a
*record* holding a cheap on-device sentinel (a sum, non-finite whenever the tensor is) and a
reference to the tensor. Once per step all sentinels are stacked and read with a single host
synchronisation; only when that trips are the records re-checked exactly, in order, and the first
truly non-finite one becomes the diagnosis. Records are dropped after each check.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import deque
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn

from loopdoctor.runtime import sources
from loopdoctor.runtime.checks import NONFINITE_CODE, select_codes
from loopdoctor.runtime.diagnosis import (
    LIKELY_CAUSES, OUTSIDE_OPTIMIZER_CAUSE, STAGES, STALLED_SCALER_CAUSE, Diagnosis, NonFiniteError, TensorStats,
)
from loopdoctor.runtime.findings import user_site
from loopdoctor.runtime.recorder import Recorder
from loopdoctor.runtime.sources import BackwardPatch

# raise: NonFiniteError at the first finding; warn: a RuntimeWarning; record: only `findings`.
MODES = ("raise", "warn", "record")
GRADIENT_RECORDS = ("gradient", "grad-params")
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
    """One value seen this step. A plain class with slots: several are made per module call."""

    __slots__ = (
        "stage", "where", "sentinel", "tensors", "module", "tensor_id", "params", "shape", "dtype",
        "inplace_after", "step", "batch", "evaluating", "versions", "inputs",
    )

    def __init__(self, watch: "Watch", stage: str, where: str, sentinel: torch.Tensor, tensors: tuple,
                 module: Optional[str] = None, tensor_id: Optional[int] = None, params: tuple = (), shape: tuple = (),
                 dtype: Optional[torch.dtype] = None, inplace_after: Optional[str] = None):
        self.stage = stage  # input | activation | functional | loss | gradient | grad-params | parameter
        self.where = where
        # 0-d, non-finite whenever the tensors are; for grad-params and parameter records a 1-d
        # tensor of their norms.
        self.sentinel = sentinel
        self.tensors = tensors
        self.module = module  # for functional inputs and gradients: the module involved
        self.tensor_id = tensor_id  # for gradients: id of the forward tensor they belong to
        self.params = params  # the parameters, for grad-params and parameter records (named only if diagnosed)
        self.shape = shape  # for gradient records, which keep no tensor
        self.dtype = dtype
        self.inplace_after = inplace_after  # functional: the module whose output was changed in place
        # Where the record was made, not where it is checked (accumulation, closures, validation).
        self.step = watch.step
        self.batch = watch.batch if watch.batch > 0 else 0
        self.evaluating = watch._evaluating
        # The tensors' version counters when recorded.
        self.versions = (tensors[0]._version,) if len(tensors) == 1 else tuple([t._version for t in tensors])
        self.inputs: tuple = ()  # for softmax modules: what they were given

    def is_finite(self) -> bool:
        """Were the values finite *when recorded*? A finite sum says so (a NaN or Inf makes any
        sum non-finite); a non-finite one may be an overflow of finite values, so the tensors are
        checked, unless code changed them in place since (``h /= ...``): then the sum is all
        that is known of the recorded values."""
        if bool(torch.isfinite(self.sentinel).all()) or not self.tensors:
            return bool(torch.isfinite(self.sentinel).all())
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


def _is_finite(tensor: torch.Tensor) -> bool:
    tensor = tensor.detach()
    if tensor.is_sparse:
        tensor = tensor.coalesce().values()
    return bool(torch.isfinite(tensor).all())


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
        self.mode = mode
        self.scaler = scaler
        self.max_skipped_steps = max_skipped_steps
        self.findings: list[Diagnosis] = []
        self.step = 0  # optimizer steps completed
        self.batch = -1  # training forward passes started, minus one
        self.skipped_steps = 0
        self.rank: Optional[int] = None
        self._models: list[nn.Module] = []
        self._optimizers: list[Any] = []
        self._handles: list[Any] = []
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
        self._versions: dict[int, int] = {}  # id(tensor) -> its version counter when a module made it
        self._pre_step_norms: list[tuple[tuple, torch.Tensor]] = []  # (names, norms) of parameters before each update
        self._update_since_check = False
        self._param_versions: dict[int, int] = {}  # id(parameter) -> its version after the last update
        self._mask_places: set[tuple] = set()  # where masks (-inf on purpose) go in, as _place() says
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
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._models.clear()
        self._optimizers.clear()
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
            self._handles.append(module.register_forward_hook(self._forward_hook(module_name or "(model)", module, module is model)))
        self._handles.append(model.register_forward_pre_hook(self._model_pre_hook, with_kwargs=True))
        self._handles.append(model.register_forward_hook(self._model_output_hook))
        for param_name, param in model.named_parameters(prefix=name):
            self._param_names.setdefault(id(param), param_name)

    def add_optimizer(self, optimizer: Any) -> None:
        if any(optimizer is known for known in self._optimizers):
            return
        self._optimizers.append(optimizer)
        self._handles.append(optimizer.register_step_pre_hook(self._before_step))
        self._handles.append(optimizer.register_step_post_hook(self._after_step))

    # ---- hooks ------------------------------------------------------------------------------
    def _model_pre_hook(self, model, args, kwargs):
        __tracebackhide__ = True
        if self._records:
            self._check(stepped=False)
        self._evaluating = not (torch.is_grad_enabled() and model.training)
        if not self._evaluating:
            self.batch += 1
        for tensor in _floating((args, kwargs)):
            if "input" in self.stages:
                self._add(self._input_record(tensor))
            else:
                self._alive.append(tensor)
            self._produced[id(tensor)] = "input"
        return None

    def _add(self, record: _Record) -> None:
        """Hold an input or functional record: where masks went in before, sum without their -inf."""
        if self._mask_places and _place(record) in self._mask_places:
            record.sentinel = _sentinel(torch.nan_to_num(record.tensors[0].detach(), nan=math.nan, posinf=math.inf, neginf=0.0))
        self._records.append(record)

    def _input_record(self, tensor: torch.Tensor) -> _Record:
        return _Record(self, "input", "input", _sentinel(tensor), (tensor,))

    def _model_output_hook(self, model, args, output):
        for tensor in _floating(output):
            self._model_outputs.add(id(tensor))
        return None

    def _forward_hook(self, name: str, module: nn.Module, root: bool = False):
        module_type, safe = type(module).__name__, type(module) in SAFE_MODULE_TYPES
        observe = self._observe_module

        def hook(_module, args, output):
            observe(name, module_type, safe, args, output, root)

        return hook

    def _observe_module(self, name: str, module_type: str, safe: bool, args, output, root: bool = False) -> None:
        """Record a module's functional inputs and its outputs, and hook their gradients."""
        produced, consumer = self._produced, self._consumer
        # `stages=["logit"]` alone checks what the model returns, not what its layers do.
        forward = "activation" in self.stages or (root and "logit" in self.stages)
        gradients = "gradient" in self.stages
        track_grads = gradients and torch.is_grad_enabled()
        versions = self._versions
        for tensor in _floating(args):
            key = id(tensor)
            # Made by functional code between submodules, or changed in place by it (`h /= s`).
            changed = key in produced and versions.get(key, tensor._version) != tensor._version
            if key not in produced or changed:
                inplace_after = produced[key] if changed else None
                produced[key], versions[key] = "functional", tensor._version
                if forward:
                    self._add(_Record(self, "functional", name, _sentinel(tensor), (tensor,), module_type, inplace_after=inplace_after))
                else:
                    self._alive.append(tensor)
                if track_grads and tensor.requires_grad:
                    tensor.register_hook(functools.partial(self._on_gradient, name, key))
            consumer[key] = name
        if isinstance(output, torch.Tensor):
            outputs = (output,) if output.is_floating_point() or output.is_complex() else ()
        else:
            outputs = tuple(_floating(output))
        for tensor in outputs:
            key = id(tensor)
            versions[key] = tensor._version  # (an in-place module, `ReLU(inplace=True)`, changed it)
            if key in produced and not (root and forward and "activation" not in self.stages):
                continue  # a container returning its last child's output: keep the innermost
            produced[key] = name
            if safe or not forward:  # no check; kept alive so that its id cannot be reused within the step
                self._safe_outputs[name] = key
                self._alive.append(tensor)
                if safe:
                    continue
            else:
                record = _Record(self, "activation", name, _sentinel(tensor), (tensor,), module_type)
                if module_type in SOFTMAX_MODULE_TYPES:  # to say when a whole row was masked
                    record.inputs = tuple(_floating(args))
                self._records.append(record)
            if track_grads and tensor.requires_grad:
                tensor.register_hook(functools.partial(self._on_gradient, name, key))

    def _on_gradient(self, name: str, tensor_id: int, grad: torch.Tensor) -> None:
        # Holding every activation gradient until the step ends would raise peak memory and
        # cost about 6% of a step (benchmarks/RESULTS.md); keep only the sentinel.
        self._records.append(_Record(self, "gradient", name, _sentinel(grad), (), tensor_id=tensor_id, shape=tuple(grad.shape), dtype=grad.dtype))

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
        self._measure_changed_parameters(params)
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

    def _measure_changed_parameters(self, params: list[torch.Tensor]) -> None:
        """What the forward ran with, for parameters changed since the last update (or never
        seen): the update that follows may make them non-finite, and then the forward is not to
        blame."""
        versions = self._param_versions
        changed = [p for p in params if versions.get(id(p)) != p._version]
        if changed and "activation" in self.stages:
            # The largest magnitude: finite exactly when every value is (a 2-norm may overflow).
            with torch.no_grad():  # (cheaper than detaching every parameter)
                largest = torch._foreach_norm(changed, ord=math.inf)
            self._pre_step_norms.append((self._names(changed), torch.stack([n.float() for n in largest])))

    def _record_gradients(self, params: list[torch.Tensor]) -> None:
        params = [p for p in params if p.grad is not None]
        if params and "gradient" in self.stages:
            grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in params]
            norms = torch.stack(torch._foreach_norm(grads))
            self._records.append(_Record(self, "grad-params", "gradients", norms, tuple(grads), params=tuple(params)))
            self._step_grad_norms.append(norms)

    def _after_step(self, optimizer, args, kwargs):
        __tracebackhide__ = True
        params = _parameters(optimizer)
        if params and "parameter" in self.stages:
            with torch.no_grad():
                norms = torch.stack(torch._foreach_norm(params))
            kept = tuple(params)
            self._records.append(_Record(self, "parameter", "parameters", norms, kept, params=kept))
        self._optimizer_stepped = True
        self._param_versions.update(zip(map(id, params), [p._version for p in params]))
        skipped_before = self.skipped_steps
        self._check(stepped=True)
        if self.skipped_steps <= skipped_before:  # a fused optimizer's skipped step is no step
            # With several optimizers (a GAN's two), one training step steps each once.
            count = self._steps_by_optimizer.get(id(optimizer), 0) + 1
            self._steps_by_optimizer[id(optimizer)] = count
            self.step = max(self.step, count)
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
            # The forward hooks hold these very objects: clear them in place.
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

    @staticmethod
    def _all_finite(records: list[_Record]) -> bool:
        """One read of the host per device: every sentinel of the step in one tensor (the 0-d
        ones stacked, the norm vectors appended). Read back as a list: on small tensors
        `isfinite().all()` costs three times what the copy does."""
        scalars: dict[torch.device, list[torch.Tensor]] = {}
        vectors: dict[torch.device, list[torch.Tensor]] = {}
        for record in records:
            sentinel = record.sentinel
            (vectors if sentinel.dim() else scalars).setdefault(sentinel.device, []).append(sentinel)
        for device in scalars.keys() | vectors.keys():
            parts = vectors.get(device, [])
            if device in scalars:
                parts.insert(0, torch.stack(scalars[device]))
            if not all(map(math.isfinite, (torch.cat(parts) if len(parts) > 1 else parts[0]).tolist())):
                return False
        return True

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
            grad_norm_history=[float(torch.linalg.vector_norm(norms.float())) for norms in self._grad_norm_history],
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
