"""LD019: epoch loss as the plain mean of batch means (off by default)."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, dotted
from loopdoctor.static.rules.base import Rule, Violation


class UnweightedEpochMean(Rule):
    code = "LD019"
    required_tokens = (("len(",), ("+=",))

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in model.functions:
            for loop in function.loops:
                if not loop.iter_key:
                    continue
                totals = {a.key for a in function.augmented if loop.contains(a.order) and a.loop is loop and _is_item(a.value)}
                results = [(a.order, a.value) for assignments in function.assignments.values() for a in assignments]
                for order, value in results + function.returns:
                    if order > loop.end and _is_mean_over_batches(value, totals, loop.iter_key):
                        yield Violation(
                            value,
                            f"the epoch loss is the plain mean of per-batch means over `len({loop.iter_key})` "
                            "batches: a short last batch counts as much as a full one; weight each batch "
                            "by its size and divide by the number of samples",
                        )


def _is_item(value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value == "item"


def _is_mean_over_batches(value, totals: set[str], loader: str) -> bool:
    if not isinstance(value, cst.BinaryOperation) or not isinstance(value.operator, cst.Divide):
        return False
    right = value.right
    return (
        dotted(value.left) in totals
        and isinstance(right, cst.Call)
        and dotted(right.func) == "len"
        and bool(right.args)
        and dotted(right.args[0].value) == loader
    )
