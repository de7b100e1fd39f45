"""LD006: a model evaluated with gradient tracking on, building a graph nobody uses."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, FixPlan, WrapInWith, spelling
from loopdoctor.static.flow import EVAL, EVALUATION_LOOP, Flow, is_evaluation_loop, is_lightning_eval_hook
from loopdoctor.static.model import CallSite, Function, Loop, SemanticModel, argument
from loopdoctor.static import roles
from loopdoctor.static.roles import GRAD_SWITCHES
from loopdoctor.static.rules.base import Rule, Violation

# Calls that show a function wants gradients without calling backward() itself.
GRADIENT_REQUESTS = frozenset({"torch.autograd.grad", "torch.func.grad", "torch.func.vjp"})


class EvalWithoutNoGrad(Rule):
    code = "LD006"
    name = "eval-without-no-grad"
    summary = "Model evaluated (validation/test loop, or a loop in eval mode) outside `torch.no_grad()` / `inference_mode()`"
    fix_hint = "wrap the evaluation in `with torch.no_grad():`"

    @classmethod
    def wants(cls, source: str) -> bool:
        return ".eval(" in source or "train(False)" in source or EVALUATION_LOOP.search(source) is not None

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            if _needs_graph(function, flow) or _grad_off(function, semantic):
                continue
            flagged: list[Loop] = []
            for loop in function.loops:  # outer loops first: wrapping one covers the loops inside it
                if any(outer.encloses(loop) for outer in flagged):
                    continue
                site = _first_tracked_model_call(loop, function, semantic, flow)
                if site is not None:
                    flagged.append(loop)
                    yield Violation(
                        site.node,
                        f"`{roles.called_model(semantic, site)}` is evaluated with gradient tracking on: every batch builds an "
                        "autograd graph that is never used (memory and time)",
                        _fix(loop, semantic),
                    )


def _first_tracked_model_call(loop: Loop, function: Function, semantic: SemanticModel, flow: Flow):
    """The first model call of an evaluation: in a held-out-data loop, or with the model in eval
    mode on every path, in a loop that does not train."""
    held_out = is_evaluation_loop(loop, flow)
    if not held_out and flow.loop_effects(loop).trains:
        return None
    for site in function.calls:
        key = roles.called_model(semantic, site) if loop.contains(site.order) and site.grad_block is None else None
        if key is None:
            continue
        if held_out or flow.mode_before(site, key) == frozenset({EVAL}):
            return site
    return None


def _needs_graph(function: Function, flow: Flow) -> bool:
    """Saliency maps, adversarial examples, Lightning's hooks (run under no_grad by the trainer),
    and shape probes while a model is built (fastai's U-Net runs its blocks in ``__init__``)."""
    if function.name == "__init__" or is_lightning_eval_hook(function) or flow.function_effects(function).backward:
        return True
    return any(s.callee in GRADIENT_REQUESTS or s.method == "requires_grad_" for s in function.calls)


def _grad_off(function: Function, semantic: SemanticModel) -> bool:
    """Every same-file caller disables grad, or ``torch.set_grad_enabled(False)`` is called as a
    statement in the function or at the top of the module (an inference script's first line)."""
    if any(_switches_grad_off(site) for scope in (function, semantic.top) for site in scope.calls):
        return True
    callers: list[CallSite] = semantic.call_sites_of(function)
    return bool(callers) and all(site.grad_block is not None for site in callers)


def _switches_grad_off(site: CallSite) -> bool:
    if site.callee not in GRAD_SWITCHES or isinstance(site.statement, cst.With):
        return False
    mode = argument(site.node, 0, "mode")
    return isinstance(mode, cst.Name) and mode.value == "False"


def _fix(loop: Loop, semantic: SemanticModel) -> FixPlan:
    """Unsafe: code in another file may still want gradients of what the loop computes."""
    no_grad, imports = spelling(semantic.imports, semantic.module, "torch.no_grad")
    return FixPlan(UNSAFE, f"run the loop under `with {no_grad}():`", (WrapInWith(loop.node, f"with {no_grad}():"), *imports))
