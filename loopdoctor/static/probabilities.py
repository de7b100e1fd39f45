"""Where a value comes from a softmax or a sigmoid: the question behind LD001, LD011 and LD012.

Follows names to the value that last reached them, value-preserving methods (``.float()``,
``.view()``, ...), ``nn.Softmax`` / ``nn.Sigmoid`` modules, models whose output ends in one
(``nn.Sequential``, ``add_module``, a class whose ``forward`` returns it on every path) and
same-file helpers that return it.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from loopdoctor.static.model import Function, SemanticModel, call_args, dotted
from loopdoctor.static import roles
from loopdoctor.static.roles import SOFTMAX_FUNCTIONS, VALUE_PRESERVING_METHODS

MAX_DEPTH = 6


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
        if qualified in self.functions or roles.is_torch_name(model, qualified, self.name):
            return f"the output of {self.name}"
        if isinstance(func, cst.Attribute):
            if func.attr.value == self.name:
                return f"the output of {self.name}"
            if func.attr.value in VALUE_PRESERVING_METHODS:
                return self.origin(func.value, function, order, depth + 1)
        if isinstance(func, cst.Call):  # nn.Softmax(dim=1)(x)
            role = roles.role_of_value(model, func, function)
            return f"an `nn.{role.detail}` module" if role is not None and role.detail in self.modules else None
        key = dotted(func)
        if key is None:
            return None
        role = roles.role_of(model, key, function)
        if role is not None and role.detail in self.modules:
            return f"`{key}` (an `nn.{role.detail}` module)"
        if role is not None and role.kind == "model" and self.model_ends_in_softmax(key, function):
            if role.detail in model.external:
                return f"`{key}(...)` (a `{role.detail}`, defined in another file, whose output ends in {self.name})"
            return f"`{key}(...)` (a model whose output ends in {self.name})"
        for callee in model.by_name.get(key, []):
            if callee.cls is None and self.function_returns_softmax(callee, depth):
                return f"`{key}(...)` (which returns {self.name})"
        return None

    def model_ends_in_softmax(self, key: str, function: Function) -> bool:
        model = self.model
        cls = roles.model_class(model, key, function)
        if cls is not None:
            forward = cls.methods.get("forward")
            return forward is not None and self.function_returns_softmax(forward, 0)
        construction = roles.model_construction(model, key, function)
        if construction is not None and self.name in model.external.get(model.resolve(construction.func) or "", ()):
            return True  # a class from another file of the project (crossfile.py)
        if construction is not None and roles.is_torch_name(model, model.resolve(construction.func), "Sequential"):
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
        role = roles.role_of_value(self.model, expr, function)
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
