"""LD003: a model evaluated while it may still be in training mode."""

from __future__ import annotations

import re
from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, FixPlan, InsertLine
from loopdoctor.static.flow import (
    DISABLES_GRAD, EVALUATION_LOOP, EVALUATION_WORDS, TRAIN, UNKNOWN, Flow, is_backward, is_evaluation_loop, is_lightning_eval_hook,
    stepped_optimizer, train_call_mode,
)
from loopdoctor.static.model import CallSite, Function, Loop, SemanticModel, call_args, dotted, words_of
from loopdoctor.static.walk import walk
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static import roles
from loopdoctor.static.callers import PREDICTION_PREFIXES


# A test function with an assert: the one place a forward outside `no_grad` is taken as evaluation.
TEST_WITH_ASSERT = re.compile(r"^[ \t]*def[ \t]+test\w*\(.*?^[ \t]*assert\b", re.M | re.S)
PREDICTION_FUNCTION = re.compile(r"^def[ \t]+(?:%s)\w*[ \t]*\([ \t]*\w" % "|".join(PREDICTION_PREFIXES), re.M)
# Held-out data by its name, as a subscript or an argument: `output[idx_test]`, `model(X_val)`.
HELD_OUT_ARGUMENT = re.compile(r"[\[(,][ \t]*(?:\w+_)?(?:val|valid|test|dev|holdout)(?:_\w+)?[ \t]*[\]),]", re.I)


class MissingEvalMode(Rule):
    code = "LD003"
    name = "missing-eval-mode"
    summary = "Model evaluated without `model.eval()` on every path before it"
    fix_hint = "call `model.eval()` before evaluating and `model.train()` before training again"

    @classmethod
    def wants(cls, source: str) -> bool:
        if any(pattern.search(source) is not None for pattern in (DISABLES_GRAD, EVALUATION_LOOP, TEST_WITH_ASSERT)):
            return True
        # Full-batch evaluation matters where the file trains too (pygcn's train.py).
        return (("backward(" in source or ".train(" in source) and HELD_OUT_ARGUMENT.search(source) is not None) or (
            PREDICTION_FUNCTION.search(source) is not None)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        yield from self._asserted_outputs(semantic, flow)
        yield from self._uncalled_predictions(semantic, flow)
        for context in evaluation_contexts(semantic, flow):
            for site in context:
                key = roles.evaluated_model(semantic, site)
                if key is None:
                    continue
                if _train_mode_chosen_here(site, key, context):
                    break  # `model.train()` inside the no_grad block: BatchNorm re-estimation on purpose
                mode = flow.mode_before(site, key)
                trainer = _trained_by_its_class(site, key) if mode == {UNKNOWN} else None
                if TRAIN in mode or trainer is not None:
                    layers = roles.mode_dependent_layers(semantic, key, site.function)
                    if layers == frozenset() or (layers == {"BatchNorm"} and _compares_forwards(semantic, site.function)):
                        break  # both modes compute the same here (as at run time)
                    if layers == {"Dropout"} and site.function.name.startswith("test") and _outputs_read_only_for_shapes(site):
                        break
                    where = _from_elsewhere(flow, site, key) if trainer is None else f" (`{trainer.qualname}()` calls `{key}.train()`, and nothing on the way here calls `{key}.eval()`)"
                    yield Violation(site.node, f"`{key}` is evaluated here but may still be in training mode{where}: "
                                               f"{_effect(layers)}", _fix(site, key, flow))
                    break


    def _uncalled_predictions(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        """A prediction function (``predict_snli(net, ...)``) that no code of the project calls,
        run on a model it is handed without putting it in eval mode: it predicts in whatever
        mode its callers leave the model, and none here shows which. (Where callers exist, the
        modes they hand in decide, as for any evaluation.)"""
        for function in _prediction_functions(semantic, flow):
            for site in function.calls:
                key = roles.evaluated_model(semantic, site)
                head = (key or "").partition(".")[0]
                if key is None or head not in function.params or flow.has_callers(function, key):
                    continue
                if flow.mode_before(site, key) == flow.mode_before(site, head) == {UNKNOWN}:  # (`net.eval()` sets `net.encoder`'s)
                    yield Violation(site.node, f"`{key}` is run here for a prediction in whatever mode it arrives in: nothing in "
                                               f"`{function.name}()` puts it in eval mode, and no code in this project calls "
                                               f"`{function.name}()`; if it arrives in training mode, {_effect(roles.mode_dependent_layers(semantic, key, function))}")
                break

    def _asserted_outputs(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        """A test's forward pass outside ``no_grad``: a model built in the test in training mode,
        run in a test that never trains, whose outputs an ``assert`` checks."""
        for function in semantic.functions:
            if not function.name.startswith("test") or function is semantic.top or _trains(flow, function):
                continue
            checked, values = _asserted_keys(function), _asserted_keys(function, values_only=True)
            for site in function.calls:
                key = roles.evaluated_model(semantic, site) if site.grad_block is None else None
                if key is None or not _result_asserted(site, checked) or key not in function.assignments:
                    continue
                if _training_chosen(flow, function, site, key):
                    break  # training mode chosen on purpose: a test of training behaviour
                if flow.mode_before(site, key) == {TRAIN}:
                    layers = roles.mode_dependent_layers(semantic, key, function)
                    if layers == {"BatchNorm"} and _compares_forwards(semantic, function):
                        break
                    if layers == {"Dropout"} and not _result_asserted(site, values):
                        break  # only shapes, types or keys asserted: Dropout changes none of them
                    if layers != frozenset():
                        yield Violation(site.node, f"`{key}` is run here, in training mode, for outputs that an `assert` "
                                                   f"checks: {_effect(layers)}")
                    break


def _trained_by_its_class(site: CallSite, key: str) -> Optional[Function]:
    """Another method of the class that calls ``key.train()`` (``Trainer.train_epoch``), for an
    evaluation whose mode nothing in this file tells (no caller here, or callers that do not
    know it either): the class itself says that the model spends time in training mode."""
    cls = site.function.owner_class
    for method in cls.methods.values() if cls is not None else ():
        if method is not site.function and any(
                other.receiver == key and other.method == "train" and train_call_mode(other.node) == TRAIN for other in method.calls):
            return method
    return None


def _compares_forwards(semantic: SemanticModel, function: Function) -> bool:
    """A test with more than one forward pass compares them (accelerate's tests: a model's
    outputs before and after offloading or dispatching it). With BatchNorm alone, two passes in
    training mode on the same batch give the same outputs: the mode does not matter there."""
    return function.name.startswith("test") and sum(roles.evaluated_model(semantic, site) is not None for site in function.calls) > 1


def _prediction_functions(semantic: SemanticModel, flow: Flow) -> Iterator[Function]:
    for function in semantic.functions:
        if function.name.startswith(PREDICTION_PREFIXES) and function.cls is None and function.parent is semantic.top and not _trains(flow, function):
            yield function


def _training_chosen(flow: Flow, function: Function, site: CallSite, key: str) -> bool:
    """Does the test run the model in training mode on purpose? It does when it asks for it
    (``train()`` before this forward) or switches modes later (an ``eval()`` after it, or a
    ``train()`` that changes the mode). A later ``train()`` on a model that can only be in
    training mode says instead that its author thought it was in eval mode: the ``eval()``
    before this forward is missing."""
    for other in function.calls:
        if other.receiver != key or other.method not in ("train", "eval"):
            continue
        if other.order < site.order:
            if other.method == "train":
                return True
        elif other.method == "eval" or flow.mode_before(other, key) != {TRAIN}:
            return True
    return False


def _trains(flow: Flow, function: Function) -> bool:
    return any(_trains_here(flow, site) or site.callee in ("torch.autograd.grad", "torch.autograd.backward") for site in function.calls)


def _trains_here(flow: Flow, site: CallSite) -> bool:
    return is_backward(site) or stepped_optimizer(flow.model, site) or _calls_training_helper(flow, site)


def _asserted_keys(function: Function, values_only: bool = False) -> set[str]:
    """Names an ``assert`` (or an ``assert*`` call) of the function reads (``values_only``: for
    their values, not ``out.shape`` or ``len(out)``)."""
    found: set[str] = set()
    for node in walk(function.node):
        checked = node.test if isinstance(node, cst.Assert) else None
        if isinstance(node, cst.Call) and "assert" in (dotted(node.func) or "").rsplit(".", 1)[-1].lower():
            checked = node
        if checked is not None:
            found |= _value_reads(checked) if values_only else _names_in(checked)
    return found


def _names_in(node: cst.CSTNode) -> set[str]:
    return {key for key in (dotted(n) for n in walk(node) if isinstance(n, (cst.Name, cst.Attribute))) if key}


# Reads that say the same in both modes: a tensor's shape, dtype or device, a dict's keys.
SHAPE_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "size", "dim", "keys", "numel"})
SHAPE_FUNCTIONS = frozenset({"len", "type", "isinstance", "set", "sorted"})


def _value_reads(node: cst.CSTNode, skipped: Optional[cst.CSTNode] = None) -> set[str]:
    """Dotted names read for their values under ``node`` (all of ``skipped`` left out): not
    ``out.shape``, ``len(out)``, ``set(out)`` or ``"logits" in out``."""
    if node is skipped or (isinstance(node, cst.Attribute) and node.attr.value in SHAPE_ATTRIBUTES):
        return set()
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in SHAPE_FUNCTIONS:
        return set()
    if isinstance(node, cst.Comparison) and all(isinstance(c.operator, (cst.In, cst.NotIn)) for c in node.comparisons):
        return _value_reads(node.left, skipped)
    key = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
    found = {key} if key else set()
    for child in node.children:
        found |= _value_reads(child, skipped)
    return found


def _outputs_read_only_for_shapes(site: CallSite) -> bool:
    """In a test, are the names a forward's outputs are bound to (``features, logits = model(...)``)
    read only for their shapes, types or keys? Then Dropout changes nothing the test checks
    (BatchNorm would still update its statistics, and fail on a batch of one)."""
    statement = site.statement
    if not (isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Assign)):
        return False
    targets = {dotted(n) for t in statement.body[0].targets for n in walk(t.target) if isinstance(n, cst.Name)} - {"_", None}
    return bool(targets) and targets.isdisjoint(_value_reads(site.function.node, skipped=statement))


def _result_asserted(site: CallSite, checked: set[str]) -> bool:
    statement = site.statement
    if isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Assign):
        return any(dotted(target.target) in checked for target in statement.body[0].targets)
    return isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Assert)


# What training mode does to a model, per kind of mode-dependent layer it holds.
TRAINING_MODE_EFFECTS = {
    "Dropout": "its Dropout stays active",
    "BatchNorm": "its BatchNorm uses and updates batch statistics",
    roles.TRAINING_BRANCH: "its code that reads `self.training` takes the training branch",
}


def _effect(layers: Optional[frozenset[str]]) -> str:
    """What training mode does to this model's evaluation: ``layers`` are its mode-dependent
    layers (some), or None where they are not known."""
    if layers is None:
        return "any Dropout stays active and any BatchNorm uses and updates batch statistics"
    if layers == {"Dropout"}:
        return "its Dropout stays active, so the evaluation is noisy"
    if layers == {"BatchNorm"}:
        return "its BatchNorm uses and updates batch statistics, so the evaluation changes the model"
    effects = [effect for kind, effect in TRAINING_MODE_EFFECTS.items() if kind in layers]
    return ", ".join(effects[:-1]) + " and " + effects[-1] if len(effects) > 1 else effects[0]


def _from_elsewhere(flow: Flow, site: CallSite, key: str) -> str:
    """Where the training mode comes from, when that is a caller in another file."""
    callers = flow.training_callers_elsewhere(site.function, key)
    if not callers:
        loaded = any(a.value is not None and roles.loaded_mode(flow.model, a.value) == TRAIN for a in flow.model.definitions(key, site.function))
        return " (`torch.load` gives back a whole module in the mode it was saved in)" if loaded else ""
    more = f" and {len(callers) - 1} more" if len(callers) > 1 else ""
    return f" (`{site.function.name}()` is called with it in training mode from {callers[0]}{more})"


def _train_mode_chosen_here(site: CallSite, key: str, context: list[CallSite]) -> bool:
    return any(other.receiver == key and other.method == "train" and other.order < site.order for other in context)


def evaluation_contexts(semantic: SemanticModel, flow: Flow) -> Iterator[list[CallSite]]:
    """Groups of calls, in order, that run a model for evaluation rather than training."""
    for function in semantic.functions:
        if is_lightning_eval_hook(function):
            continue
        blocks: dict[int, list[CallSite]] = {}
        for site in function.calls:
            if site.grad_block is not None:
                blocks.setdefault(id(site.grad_block), []).append(site)
        for sites in blocks.values():
            if not _inside_training_step(sites, function, flow):
                yield sites
        for loop in function.loops:
            if is_evaluation_loop(loop, flow):
                yield [s for s in function.calls if loop.contains(s.order) and s.grad_block is None]
        for site in _held_out_forwards(semantic, flow, function):
            yield [site]
    for function in _prediction_functions(semantic, flow):
        yield [site for site in function.calls if site.grad_block is None]


def _held_out_forwards(semantic: SemanticModel, flow: Flow, function: Function) -> Iterator[CallSite]:
    """Full-batch evaluation, with no loop and no ``no_grad`` (pygcn's ``output = model(features,
    adj)`` read as ``output[idx_test]``): a forward given held-out data, or whose output is
    indexed by it, with no training after it in the function (or in its loop's iteration)."""
    indexed: Optional[set[str]] = None  # names read as `name[held-out]`, found on first need
    for site in function.calls:
        if site.grad_block is not None or roles.evaluated_model(semantic, site) is None or _trains_after(flow, function, site):
            continue
        positional, keywords = call_args(site.node)
        if any(_held_out(value) for value in (*positional, *keywords.values())):
            yield site
            continue
        output = _assigned_name(site)
        if output is not None:
            indexed = _indexed_by_held_out(function) if indexed is None else indexed
            if output in indexed:
                yield site


def _held_out(expr: cst.BaseExpression) -> bool:
    """Named like held-out data: ``x_test``, ``self.val_data``, or indexed by such a name
    (``features[idx_test]``)."""
    if isinstance(expr, cst.Subscript):
        return any(isinstance(element.slice, cst.Index) and _held_out(element.slice.value) for element in expr.slice)
    key = dotted(expr)
    return key is not None and bool(words_of(key) & EVALUATION_WORDS)


def _assigned_name(site: CallSite) -> Optional[str]:
    """``output`` in ``output = model(...)``."""
    statement = site.statement
    if not (isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Assign)):
        return None
    assign = statement.body[0]
    if assign.value is not site.node or len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Name):
        return None
    return assign.targets[0].target.value


def _indexed_by_held_out(function: Function) -> set[str]:
    return {dotted(node.value) for node in walk(function.node) if isinstance(node, cst.Subscript) and _held_out(node)} - {None}


def _trains_after(flow: Flow, function: Function, forward: CallSite) -> bool:
    loop = forward.loop
    return any(
        site.order > forward.order and (loop is None or loop.contains(site.order)) and _trains_here(flow, site)
        for site in function.calls
    )


def _inside_training_step(sites: list[CallSite], function: Function, flow: Flow) -> bool:
    """A no_grad block in the same loop iteration as a backward() is part of a training step
    (targets of a target network, GAN fakes for the discriminator, EMA updates)."""
    block = sites[0].grad_block
    if isinstance(block, cst.FunctionDef):
        return False
    loop: Optional[Loop] = sites[0].loop
    for site in function.calls:
        if site.grad_block is not block and site.loop is loop and is_backward(site):
            return True
        if site.grad_block is not block and site.loop is loop and _calls_training_helper(flow, site):
            return True
    return False


def _calls_training_helper(flow: Flow, site: CallSite) -> bool:
    return any(flow.function_effects(callee).backward for callee in flow.model.callees(site))


def _leaves_the_function(block: cst.CSTNode) -> bool:
    last = block.body.body[-1] if isinstance(block.body, cst.IndentedBlock) else block.body
    small = last.body[-1] if isinstance(last, (cst.SimpleStatementLine, cst.SimpleStatementSuite)) else last
    return isinstance(small, (cst.Return, cst.Raise))


def _fix(site: CallSite, key: str, flow: Flow) -> Optional[FixPlan]:
    """Unsafe: ``model.eval()`` before the evaluation block and ``model.train()`` after it; it
    changes what the model computes there, which is the point, but also what follows. A
    full-batch evaluation has no block of its own to put them around."""
    loop = site.loop if site.loop is not None and is_evaluation_loop(site.loop, flow) else None
    block = site.grad_block if site.grad_block is not None else (loop.node if loop else None)
    if not isinstance(block, (cst.With, cst.For, cst.While)) or _leaves_the_function(block):
        return None  # (a `model.train()` after a block that returns would never run)
    return FixPlan(
        UNSAFE,
        f"call `{key}.eval()` before the evaluation and `{key}.train()` after it",
        (InsertLine(block, f"{key}.eval()"), InsertLine(block, f"{key}.train()", after=True)),
    )
