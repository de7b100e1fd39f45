"""LD019: epoch loss as the plain mean of batch means (off by default)."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import Function, Loop, SemanticModel, dotted
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.walk import walk

# `total += loss.item()`, `+= loss.detach().float()`, `+= float(loss)`: one batch mean per batch.
SCALAR_METHODS = frozenset({"item", "detach", "float", "double", "cpu"})


class UnweightedEpochMean(Rule):
    code = "LD019"
    name = "unweighted-epoch-mean"
    summary = "Epoch loss as the plain mean of batch means while the last batch can be shorter"
    fix_hint = "sum `loss.item() * len(batch)` and divide by the number of samples"
    enabled_by_default = False
    required_tokens = (("len(",), ("+=",))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for loop in function.loops:
                if not loop.iter_key:
                    continue
                totals = {a.key for a in function.augmented if a.loop is loop and _batch_scalar(a.value) is not None}
                if not totals:
                    continue
                for division in _divisions_after(function, loop):
                    if _is_mean_over_batches(division, totals, loop.iter_key):
                        yield Violation(
                            division,
                            f"the epoch loss is the plain mean of per-batch means over `len({loop.iter_key})` "
                            "batches: a short last batch counts as much as a full one",
                        )


def _batch_scalar(value: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """The tensor inside ``x.item()``, ``x.detach().float()``, ``float(x)``; None for anything else."""
    if not isinstance(value, cst.Call):
        return None
    func = value.func
    if isinstance(func, cst.Attribute) and func.attr.value in SCALAR_METHODS:
        return _batch_scalar(func.value) or func.value
    if dotted(func) == "float" and len(value.args) == 1:
        return value.args[0].value
    return None


def _divisions_after(function: Function, loop: Loop) -> Iterator[cst.BinaryOperation]:
    """Divisions in what the function assigns, returns or passes to a call after the loop."""
    roots = [a.value for assignments in function.assignments.values() for a in assignments if a.order > loop.end]
    roots += [value for order, value in function.returns if order > loop.end]
    roots += [site.node for site in function.calls if site.order > loop.end]
    seen: set[int] = set()
    for root in roots:
        if root is None:  # `x: int` declares without assigning
            continue
        for node in walk(root):
            if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide) and id(node) not in seen:
                seen.add(id(node))
                yield node


def _is_mean_over_batches(division: cst.BinaryOperation, totals: set[str], loader: str) -> bool:
    left, right = division.left, division.right
    total = dotted(_batch_scalar(left) or left)
    return (
        total in totals
        and isinstance(right, cst.Call)
        and dotted(right.func) == "len"
        and bool(right.args)
        and dotted(right.args[0].value) == loader
    )
