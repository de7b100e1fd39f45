"""What the watch reports: one structured record of the first non-finite value."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

STAGES = ("input", "activation", "logit", "loss", "gradient", "parameter")

LIKELY_CAUSES = {
    "input": "bad data: the batch already holds a non-finite value before the model runs "
    "(check the dataset, feature pipeline and normalisation)",
    "activation": "unstable arithmetic in the forward pass: overflow from large inputs or weights, "
    "division by zero, or log/sqrt/pow of invalid values",
    "logit": "the model's output overflowed or was divided by zero (temperature, scaling)",
    "loss": "an unstable loss on finite logits: the log of a probability that underflowed to 0 "
    "(use log_softmax / cross_entropy on logits), a division by zero, or an invalid target",
    "gradient": "an unstable backward pass: an operation whose derivative is infinite where its "
    "value is finite (sqrt or pow at 0, norm of a zero vector), or gradients that overflow",
    "parameter": "an oversized update: the gradients were finite but the optimizer step made the "
    "parameter non-finite (learning rate far too high, or optimizer state gone bad)",
}

STALLED_SCALER_CAUSE = (
    "a gradient that is non-finite at every step, not an occasional overflow: GradScaler skips "
    "every update and halves its scale each time, so training has stopped (look for a NaN or Inf "
    "made outside the scaled backward: a hook or a `.grad` written by hand, a loss that is "
    "already Inf before scaling, or a parameter that went bad)"
)

OUTSIDE_OPTIMIZER_CAUSE = (
    "a parameter made non-finite outside the optimizer: weight renormalisation, pruning or "
    "masking, `load_state_dict` of a bad checkpoint, or an in-place edit of `.data`"
)

SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class TensorStats:
    shape: list[int]
    dtype: str
    nan: Optional[int]  # None where the tensor was not kept (activation gradients)
    posinf: Optional[int]
    neginf: Optional[int]
    finite_min: Optional[float]
    finite_max: Optional[float]
    first_bad_index: Optional[list[int]] = None  # of the first non-finite element, in row-major order


@dataclass
class Diagnosis:
    stage: str
    where: str
    step: int
    batch: int
    stats: Optional[TensorStats]
    cause: str
    detail: str = ""
    module_type: Optional[str] = None
    rank: Optional[int] = None
    loss_history: list[float] = field(default_factory=list)
    grad_norm_history: list[float] = field(default_factory=list)
    bad_gradients: list[str] = field(default_factory=list)  # parameters whose .grad is non-finite
    bad_optimizer_state: list[str] = field(default_factory=list)
    stats_of: Optional[str] = None  # the tensor ``stats`` describe, where it is not ``where`` itself
    evaluating: bool = False  # seen in an evaluation pass (no_grad or eval mode), after ``step`` steps
    filename: Optional[str] = None  # the user's line running when it was found (a step, a forward)
    line: Optional[int] = None

    code = "LD200"  # (class attributes, not fields: every diagnosis is a finding of this code)
    name = "non-finite-value"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["loss_history"] = [_json_float(v) for v in self.loss_history]
        data["grad_norm_history"] = [_json_float(v) for v in self.grad_norm_history]
        if self.stats is not None:
            for key in ("finite_min", "finite_max"):
                data["stats"][key] = _json_float(data["stats"][key])
        return data

    @property
    def headline(self) -> str:
        where = self.where if self.module_type is None else f"{self.where} ({self.module_type})"
        rank = f" on rank {self.rank}" if self.rank is not None else ""
        place = "" if self.where == self.stage else f" at {where}"
        if self.evaluating:
            return f"first non-finite value: {self.stage}{place}, during evaluation after {self.step} optimizer steps{rank}"
        return f"first non-finite value: {self.stage}{place}, step {self.step}, batch {self.batch}{rank}"

    def lines(self) -> list[str]:
        out = [self.headline]
        if self.detail:
            out.append(self.detail)
        if self.stats is not None and self.stats.nan is None:
            out.append(f"tensor {tuple(self.stats.shape)} {self.stats.dtype} (activation gradients are not kept, so no counts)")
        elif self.stats is not None:
            s = self.stats
            label = f"tensor {self.stats_of}" if self.stats_of else "tensor"
            first = f"; first at {tuple(s.first_bad_index)}" if s.first_bad_index else ""
            out.append(
                f"{label} {tuple(s.shape)} {s.dtype}: {s.nan} NaN, {s.posinf} +Inf, {s.neginf} -Inf{first}; "
                f"finite range [{_fmt(s.finite_min)}, {_fmt(s.finite_max)}]"
            )
            if s.dtype == "float16" and (s.posinf or s.neginf):
                out.append("float16 overflows to Inf beyond ±65504: compute this in float32 or bfloat16, or scale it down")
        if self.bad_gradients:
            out.append("non-finite .grad: " + ", ".join(self.bad_gradients[:8]) + (" ..." if len(self.bad_gradients) > 8 else ""))
        if self.bad_optimizer_state:
            out.append("non-finite optimizer state: " + ", ".join(self.bad_optimizer_state[:8]))
        if self.loss_history:
            out.append(f"loss up to it       {sparkline(self.loss_history)}  last {_fmt(self.loss_history[-1])}")
        if self.grad_norm_history:
            out.append(f"grad norm before it {sparkline(self.grad_norm_history)}  last {_fmt(self.grad_norm_history[-1])}")
        out.append(f"likely cause: {self.cause}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __rich__(self):
        from rich.panel import Panel
        from rich.text import Text

        body = Text()
        for index, line in enumerate(self.lines()):
            style = "bold red" if index == 0 else ("yellow" if line.startswith("likely cause") else "")
            body.append(("\n" if index else "") + line, style=style)
        return Panel(body, title="loopdoctor", border_style="red", expand=False)


class NonFiniteError(RuntimeError):
    """Raised at the first non-finite value; ``diagnosis`` says where it entered."""

    def __init__(self, diagnosis: Diagnosis):
        super().__init__(str(diagnosis))
        self.diagnosis = diagnosis


def sparkline(values: list[float]) -> str:
    """Log-scaled bars, so a blow-up stands out even across orders of magnitude."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    logs = [math.log10(abs(v) + 1e-12) for v in finite]
    low, high = min(logs), max(logs)
    span = (high - low) or 1.0
    return "".join(SPARK[min(int((v - low) / span * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in logs)


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _json_float(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None if value is None else str(value)
    return value
