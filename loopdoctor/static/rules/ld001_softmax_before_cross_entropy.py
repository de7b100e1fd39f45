"""LD001: probabilities passed as the input of a cross-entropy loss."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import SAFE, UNSAFE, FixPlan, Replace
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import (
    SOFTMAX_FUNCTIONS,
    VALUE_PRESERVING_METHODS,
    CallSite,
    Function,
    SemanticModel,
    argument,
    call_args,
    dotted,
)
from loopdoctor.static.rules.base import Rule, Violation

CROSS_ENTROPY = ("CrossEntropyLoss", "cross_entropy")
MAX_DEPTH = 6


class SoftmaxBeforeCrossEntropy(Rule):
    code = "LD001"
    required_tokens = (("cross_entropy", "CrossEntropyLoss"), ("softmax", "Softmax"))

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for site in model.iter_calls():
            if model.loss_kind_of_call(site) not in CROSS_ENTROPY:
                continue
            loss_input = argument(site.node, 0, "input")
            if loss_input is None:
                continue
            origin = Probabilities(model).origin(loss_input, site.function, site.order)
            if origin:
                yield Violation(
                    site.node,
                    f"{origin} is passed as the input of cross-entropy, which applies log-softmax "
                    "itself: the loss sees softmax twice and its gradients shrink",
                    _fix(model, loss_input, site),
                )


class Probabilities:
    """Does an expression evaluate to the output of a softmax (or, with ``squash="sigmoid"``, a
    sigmoid)? Answers with a description of where it comes from."""

    SQUASHES = {
        "softmax": ("softmax", SOFTMAX_FUNCTIONS, ("Softmax", "Softmax2d")),
        "sigmoid": ("sigmoid", frozenset({"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"}), ("Sigmoid",)),
    }

    def __init__(self, model: SemanticModel, squash: str = "softmax"):
        self.model = model
        self.seen: set[int] = set()
        self.name, self.functions, self.modules = self.SQUASHES[squash]

    def origin(self, expr: cst.BaseExpression, function: Function, order: int, depth: int = 0) -> Optional[str]:
        if depth > MAX_DEPTH:
            return None
        if isinstance(expr, cst.Name):
            assignment = self.model.reaching_value(expr.value, function, order)
            if assignment is None or assignment.value is None or assignment.unpack_index is not None:
                return None
            found = self.origin(assignment.value, function, assignment.order, depth + 1)
            return f"`{expr.value}` ({found})" if found and not found.startswith("`") else found
        if not isinstance(expr, cst.Call):
            return None
        return self._call_origin(expr, function, order, depth)

    def _call_origin(self, call: cst.Call, function: Function, order: int, depth: int) -> Optional[str]:
        model = self.model
        func = call.func
        qualified = model.resolve(func)
        if qualified in self.functions or model.is_torch_name(qualified, self.name):
            return f"the output of {self.name}"
        if isinstance(func, cst.Attribute):
            if func.attr.value == self.name:
                return f"the output of {self.name}"
            if func.attr.value in VALUE_PRESERVING_METHODS:
                return self.origin(func.value, function, order, depth + 1)
        if isinstance(func, cst.Call):  # nn.Softmax(dim=1)(x)
            role = model.role_of_value(func, function)
            return f"an `nn.{role.detail}` module" if role is not None and role.detail in self.modules else None
        key = dotted(func)
        if key is None:
            return None
        role = model.role_of(key, function)
        if role is not None and role.detail in self.modules:
            return f"`{key}` (an `nn.{role.detail}` module)"
        if role is not None and role.kind == "model" and self.model_ends_in_softmax(key, function):
            return f"`{key}(...)` (a model whose output ends in {self.name})"
        for callee in model.by_name.get(key, []):
            if callee.cls is None and self.function_returns_softmax(callee, depth):
                return f"`{key}(...)` (which returns {self.name})"
        return None

    def model_ends_in_softmax(self, key: str, function: Function) -> bool:
        model = self.model
        cls = model.model_class(key, function)
        if cls is not None:
            forward = cls.methods.get("forward")
            return forward is not None and self.function_returns_softmax(forward, 0)
        construction = model.model_construction(key, function)
        if construction is not None and model.is_torch_name(model.resolve(construction.func), "Sequential"):
            positional, _ = call_args(construction)
            if positional and self._is_softmax_module(positional[-1], function):
                return True
        return self._last_added_module_is_softmax(key, function)

    def _last_added_module_is_softmax(self, key: str, function: Function) -> bool:
        added = [
            site
            for site in self.model.iter_calls()
            if site.receiver == key and site.method in ("add_module", "append")
        ]
        if not added:
            return False
        last = max(added, key=lambda s: s.order)
        positional, keywords = call_args(last.node)
        module = keywords.get("module") or (positional[-1] if positional else None)
        return module is not None and self._is_softmax_module(module, last.function)

    def _is_softmax_module(self, expr: cst.BaseExpression, function: Function) -> bool:
        role = self.model.role_of_value(expr, function)
        return role is not None and role.detail in self.modules

    def function_returns_softmax(self, function: Function, depth: int) -> bool:
        """True when every value-returning ``return`` of ``function`` returns probabilities."""
        if id(function) in self.seen:
            return False
        self.seen.add(id(function))
        try:
            values = [(order, value) for order, value in function.returns if value is not None]
            if not values:
                return False
            return all(self.origin(value, function, order, depth + 1) for order, value in values)
        finally:
            self.seen.discard(id(function))


def _softmax_argument(model: SemanticModel, call: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``F.softmax(x, 1)`` / ``torch.softmax(x, 1)`` -> x; ``x.softmax(1)`` -> x."""
    if not isinstance(call, cst.Call):
        return None
    qualified = model.resolve(call.func)
    if qualified in SOFTMAX_FUNCTIONS or model.is_torch_name(qualified, "softmax"):
        return argument(call, 0, "input")
    if isinstance(call.func, cst.Attribute) and call.func.attr.value == "softmax":
        return call.func.value
    return None


def _fix(model: SemanticModel, loss_input: cst.BaseExpression, site: CallSite) -> Optional[FixPlan]:
    """Pass the logits instead: safe when the softmax is written inline in the loss call; unsafe
    through a name, whose logits may have been rebound in between."""
    logits = _softmax_argument(model, loss_input)
    if logits is not None:
        code = model.module.code_for_node(logits)
        return FixPlan(SAFE, f"pass `{code}` (the logits)", (Replace(loss_input, code),))
    if isinstance(loss_input, cst.Name):
        assignment = model.reaching_value(loss_input.value, site.function, site.order)
        logits = _softmax_argument(model, assignment.value) if assignment and assignment.unpack_index is None else None
        if logits is not None and isinstance(logits, (cst.Name, cst.Attribute)):
            code = model.module.code_for_node(logits)
            return FixPlan(UNSAFE, f"pass `{code}` (the logits) instead of `{loss_input.value}`", (Replace(loss_input, code),))
    return None
