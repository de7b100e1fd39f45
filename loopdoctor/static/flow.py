"""Questions about what code *does*, answered on top of the semantic model.

- ``Effects``: which ``backward()``, optimizer steps and gradient clearings a loop or function
  performs, directly or through same-file helpers (with the helper's parameters mapped to the
  caller's arguments).
- ``ModeTracker``: whether a model is in train or eval mode before a given call, on every path,
  following ``model.eval()`` / ``model.train()`` through branches, loops, helpers and callers.

Both are cached per model, so each rule asking the same question costs nothing extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import libcst as cst

from loopdoctor.static import roles
from loopdoctor.static.callers import ExternalCall
from loopdoctor.static.crossfile import BUILT_EVAL, BUILT_WRAPPING, EXIT_MODE_PREFIX
from loopdoctor.static.model import CallSite, Function, Loop, SemanticModel, argument, call_args, dotted, words_of
from loopdoctor.static.roles import GRAD_MODE_TOKENS
from loopdoctor.static.walk import walk

BACKWARD_METHODS = frozenset({"backward", "manual_backward"})

# Evaluation contexts: loops over data named like held-out data, and the hooks Lightning runs in eval mode.
EVALUATION_WORDS = {"val", "valid", "validation", "test", "eval", "evaluation", "dev", "holdout"}
DATA_WORDS = {"loader", "dataloader", "dl", "iter", "data", "dataset", "ds", "batches", "set"}
LIGHTNING_EVAL_HOOKS = {"validation_step", "test_step", "predict_step", "on_validation_epoch_end", "on_test_epoch_end"}
# Token prefilters for rules about evaluation: a source that neither disables gradients nor loops
# over something named like held-out data has no evaluation context.
DISABLES_GRAD = re.compile("|".join(GRAD_MODE_TOKENS))
EVALUATION_LOOP = re.compile(
    r"\bfor\b[^\n]*\bin\b[^\n]*(?:val|valid|test|eval|dev|holdout)[_A-Z]?(?:loader|dl|iter|data|ds|set|batches)",
    re.IGNORECASE,
)
MAX_CALL_DEPTH = 4


@dataclass
class Effects:
    backward: list[CallSite] = field(default_factory=list)
    steps: dict[str, CallSite] = field(default_factory=dict)  # optimizer key -> first step call
    clears: set[str] = field(default_factory=set)  # keys whose zero_grad() runs
    clears_everything: bool = False  # `p.grad = None`, `p.grad.zero_()`, an unknown zero_grad helper
    unscales: bool = False
    has_batch_loop: bool = False  # a loop inside that backpropagates and steps by itself

    @property
    def trains(self) -> bool:
        return bool(self.backward or self.steps)

    def merge(self, other: "Effects", mapping: dict[str, str]) -> None:
        self.backward.extend(other.backward)
        for key, site in other.steps.items():
            self.steps.setdefault(_remap(key, mapping), site)
        self.clears.update(_remap(key, mapping) for key in other.clears)
        self.clears_everything |= other.clears_everything
        self.unscales |= other.unscales
        self.has_batch_loop |= other.has_batch_loop


def _clears_gradient_of(effects: "Effects", function: Function, tensor: str) -> None:
    """``p.grad = None`` / ``p.grad.zero_()``: over a loop's parameters (``for p in
    model.parameters()``) it clears them all, as far as can be told; on one named tensor
    (``w.grad = None``) it clears that tensor, and an optimizer over other parameters is not
    cleared by it."""
    head = tensor.split(".", 1)[0]
    if function.iterates(head) or (head not in function.assignments and head not in function.params):
        effects.clears_everything = True
    else:
        effects.clears.add(tensor)


def _remap(key: str, mapping: dict[str, str]) -> str:
    head, dot, rest = key.partition(".")
    return mapping[head] + dot + rest if head in mapping else key


def is_backward(site: CallSite) -> bool:
    if site.method in BACKWARD_METHODS:
        return True
    return site.callee == "torch.autograd.backward"


def is_scaled_backward(model: SemanticModel, site: CallSite) -> bool:
    """``scaler.scale(loss).backward()``."""
    func = site.node.func
    if site.method != "backward" or not isinstance(func, cst.Attribute):
        return False
    inner = func.value
    if not (isinstance(inner, cst.Call) and isinstance(inner.func, cst.Attribute) and inner.func.attr.value == "scale"):
        return False
    return is_scaler(model, dotted(inner.func.value), site.function)


def _scaler_key(site: CallSite) -> str:
    """``scaler`` in ``scaler.scale(loss).backward()`` (a site ``is_scaled_backward`` accepts)."""
    return dotted(site.node.func.value.func.value)


def is_scaler(model: SemanticModel, key: Optional[str], function: Function) -> bool:
    if not key:
        return False
    role = roles.role_of(model, key, function)
    if role is not None:
        return role.kind == "scaler"
    return "scaler" in words_of(key)


def stepped_optimizer(model: SemanticModel, site: CallSite) -> Optional[str]:
    """The optimizer key that a call steps: ``opt.step()`` or ``scaler.step(opt)`` (or a step
    method the project names, ``opt.step_and_update_lr()``)."""
    if not roles.is_step_method(model, site.method) or site.receiver is None:
        return None
    function = site.function
    if is_scaler(model, site.receiver, function):
        target = argument(site.node, 0, "optimizer")
        key = dotted(target) if target is not None else None
        return model.canonical(key, function) if key else None
    if site.node.args and not roles.has_role(model, site.receiver, function, "optimizer"):
        return None  # env.step(action), not an optimizer
    if roles.has_role(model, site.receiver, function, "optimizer"):
        return model.canonical(site.receiver, function)
    return None


class Flow:
    """Cached effect and mode analyses for one semantic model."""

    def __init__(self, model: SemanticModel):
        self.model = model
        self._loop_effects: dict[int, Effects] = {}
        self._function_effects: dict[int, Optional[Effects]] = {}
        self._modes = ModeTracker(model)

    # ---- effects --------------------------------------------------------------------------
    def loop_effects(self, loop: Loop) -> Effects:
        cached = self._loop_effects.get(id(loop))
        if cached is None:
            sites = [s for s in loop.function.calls if loop.contains(s.order)]
            cached = self._effects(loop.function, sites, loop, depth=0)
            cached.has_batch_loop |= any(self.is_batch_loop(child) for child in _descendants(loop))
            self._loop_effects[id(loop)] = cached
        return cached

    def scales_backward(self, site: CallSite, surely: bool = False) -> bool:
        """Does ``site`` run ``scaler.scale(loss).backward()``, itself or in a same-file helper
        (open_clip's ``backward(total_loss, scaler)``)? With ``surely``, a helper's counts only
        where it is not under an ``if`` there (open_clip's is under ``if scaler is not None``,
        which a caller's ``else: optimizer.step()`` mirrors)."""
        return is_scaled_backward(self.model, site) or any(
            is_scaled_backward(self.model, inner) and not (surely and inner.branches)
            for callee in self.model.callees(site) for inner in self.function_effects(callee).backward
        )

    def backward_scaler(self, site: CallSite) -> Optional[str]:
        """The scaler of the scaled backward that ``site`` runs, named as the caller names it: its
        own, or a helper's when the helper scales there itself and takes the scaler as an argument
        or names one the caller sees too. None where not known."""
        if is_scaled_backward(self.model, site):
            return _scaler_key(site)
        for callee in self.model.callees(site):
            mapping = self.model.bind_arguments(site, callee)
            for inner in self.function_effects(callee).backward:
                if inner.function is callee and is_scaled_backward(self.model, inner):
                    head, dot, rest = _scaler_key(inner).partition(".")
                    if head in mapping:
                        return mapping[head] + dot + rest
                    return None if head in callee.params else head + dot + rest
        return None

    def function_effects(self, function: Function, depth: int = 0) -> Effects:
        key = id(function)
        if key in self._function_effects:
            return self._function_effects[key] or Effects()
        self._function_effects[key] = None  # recursion guard
        effects = self._effects(function, function.calls, None, depth)
        effects.has_batch_loop |= any(self.is_batch_loop(loop) for loop in function.loops)
        self._function_effects[key] = effects
        return effects

    def is_batch_loop(self, loop: Loop) -> bool:
        """A loop that backpropagates and steps an optimizer, with no such loop inside it."""
        effects = self.loop_effects(loop)
        return bool(effects.backward and effects.steps) and not effects.has_batch_loop

    def is_training_loop(self, loop: Loop) -> bool:
        return self.loop_effects(loop).trains

    def _effects(self, function: Function, sites: list[CallSite], loop: Optional[Loop], depth: int) -> Effects:
        model = self.model
        effects = Effects()
        for site in sites:
            if is_backward(site):
                effects.backward.append(site)
            optimizer = stepped_optimizer(model, site)
            if optimizer:
                effects.steps.setdefault(optimizer, site)
            if site.method == "zero_grad":
                if site.receiver:
                    effects.clears.add(model.canonical(site.receiver, function))
                else:
                    effects.clears_everything = True
            elif site.callee and site.callee.endswith("zero_grad"):
                effects.clears_everything = True
            elif site.method in ("zero_", "detach_", "fill_") and site.receiver and site.receiver.endswith((".grad", ".grad.data")):
                _clears_gradient_of(effects, function, site.receiver.split(".grad")[0])
            if site.method == "unscale_":
                effects.unscales = True
            if depth < MAX_CALL_DEPTH:
                for callee in model.callees(site):
                    inner = self.function_effects(callee, depth + 1)
                    effects.merge(inner, model.bind_arguments(site, callee))
        for key, assignments in function.assignments.items():
            if key.endswith(".grad") and any(loop is None or loop.contains(a.order) for a in assignments):
                _clears_gradient_of(effects, function, key[: -len(".grad")])
        return effects

    def called_from_training_loop(self, function: Function, depth: int = 0) -> bool:
        if depth > MAX_CALL_DEPTH or function is self.model.top:
            return False
        for site in self.model.call_sites_of(function):
            loop = site.loop
            while loop is not None:
                if self.is_training_loop(loop):
                    return True
                loop = loop.parent
            if self.called_from_training_loop(site.function, depth + 1):
                return True
        return False

    # ---- modes ----------------------------------------------------------------------------
    def mode_before(self, site: CallSite, key: str) -> frozenset[str]:
        return self._modes.before(site, key)

    def mode_at(self, function: Function, statement: cst.CSTNode, key: str) -> frozenset[str]:
        """Modes on entry to a statement, over every pass of the loops around it."""
        return self._modes._analyse(function, key).get(id(statement), frozenset({UNKNOWN}))

    def exit_mode(self, function: Function, key: str) -> frozenset[str]:
        """Modes of ``key`` when ``function`` returns, "keep" standing for "as on entry"."""
        return self._modes.exit_effect(function, key)

    def has_callers(self, function: Function, key: str) -> bool:
        """Is ``function`` called in this file, or handed the model ``key`` starts with by a
        call in another file of the project?"""
        return bool(self.model.call_sites_of(function) or self._modes.external_entries(function, key))

    def training_callers_elsewhere(self, function: Function, key: str) -> list[str]:
        """``path:line`` of the calls in other files that hand ``function`` the model ``key``
        starts with in training mode."""
        return [f"{call.path}:{call.line}" for call, modes in self._modes.external_entries(function, key) if TRAIN in modes]


def is_lightning_eval_hook(function: Function) -> bool:
    cls = function.owner_class
    return cls is not None and cls.is_lightning and function.name in LIGHTNING_EVAL_HOOKS


def is_evaluation_loop(loop: Loop, flow: "Flow") -> bool:
    """A loop over held-out data (``for x in val_loader``) that never backpropagates."""
    return iterates_held_out_data(loop) and not flow.loop_effects(loop).trains


def iterates_held_out_data(loop: Loop) -> bool:
    """Does the loop iterate something named like held-out data (``val_loader``, ``self.test_dl``)?"""
    words = words_of(loop.iter_key) if loop.iter_key else set()
    return bool(words & EVALUATION_WORDS) and bool(words & DATA_WORDS or any(w.endswith("loader") for w in words))


def _descendants(loop: Loop):
    for child in loop.children:
        yield child
        yield from _descendants(child)


TRAIN, EVAL, UNKNOWN, KEEP = "train", "eval", "unknown", "keep"


class ModeTracker:
    """Abstract interpretation of ``model.train()`` / ``model.eval()`` over statements.

    A state is the set of modes the model may be in: {"eval"} means eval on every path; any
    state containing "train" means some path reaches the point in training mode.
    """

    def __init__(self, model: SemanticModel):
        self.model = model
        self._before: dict[tuple[int, str], dict[int, frozenset[str]]] = {}
        self._exit: dict[tuple[int, str], frozenset[str]] = {}
        self._entry_stack: set[tuple[int, str]] = set()
        self._sites_by_statement: dict[int, dict[int, list[CallSite]]] = {}

    def before(self, site: CallSite, key: str) -> frozenset[str]:
        states = self._analyse(site.function, key)
        return states.get(id(site.statement), frozenset({UNKNOWN}))

    def _analyse(self, function: Function, key: str) -> dict[int, frozenset[str]]:
        cache_key = (id(function), key)
        if cache_key not in self._before:
            self._before[cache_key] = {}  # guard against recursion through callers
            run = _ModeRun(self, function, key, self._entry(function, key))
            self._before[cache_key] = run.states
            self._exit[cache_key] = run.exit
        return self._before[cache_key]

    def exit_effect(self, function: Function, key: str) -> frozenset[str]:
        """Modes at the end of ``function`` with "keep" standing for "as on entry"."""
        cache_key = (id(function), "exit:" + key)
        if cache_key not in self._exit:
            self._exit[cache_key] = frozenset({KEEP})
            self._exit[cache_key] = _ModeRun(self, function, key, frozenset({KEEP})).exit
        return self._exit[cache_key]

    def _entry(self, function: Function, key: str) -> frozenset[str]:
        if function is self.model.top:
            return frozenset({UNKNOWN})
        guard = (id(function), key)
        if guard in self._entry_stack:
            return frozenset({UNKNOWN})
        self._entry_stack.add(guard)
        try:
            sites = self.model.call_sites_of(function)
            state: frozenset[str] = frozenset()
            for site in sites:
                caller_key = self._caller_key(site, function, key)
                state |= self.before(site, caller_key) if caller_key else frozenset({UNKNOWN})
            for _, modes in self.external_entries(function, key):
                state |= modes
            return state or frozenset({UNKNOWN})
        finally:
            self._entry_stack.discard(guard)

    def external_entries(self, function: Function, key: str) -> list[tuple[ExternalCall, frozenset[str]]]:
        """The calls of ``function`` in other files of the project (callers.py), each with the
        modes in which it hands in the parameter that ``key`` starts with."""
        head = key.partition(".")[0]
        if function.cls is not None or function.parent is not self.model.top or head not in function.params:
            return []
        index = function.params.index(head)
        found = []
        for call in self.model.external_calls.get(function.name, ()):
            keywords = dict(call.keywords)
            if head in keywords:
                modes = keywords[head]
            elif index < len(call.positional) and not call.unpacks:
                modes = call.positional[index]
            else:
                continue  # not passed: its default (`model=None`), or hidden in `*args`
            found.append((call, modes if modes is not None else frozenset({UNKNOWN})))
        return found

    def _caller_key(self, site: CallSite, callee: Function, key: str) -> Optional[str]:
        head, dot, rest = key.partition(".")
        if head in callee.params and head not in ("self", "cls"):
            mapped = self.model.bind_arguments(site, callee).get(head)
            return mapped + dot + rest if mapped else None
        return key

    def sites_in(self, function: Function, statement: cst.CSTNode) -> list[CallSite]:
        index = self._sites_by_statement.get(id(function))
        if index is None:
            index = {}
            for site in function.calls:
                index.setdefault(id(site.statement), []).append(site)
            self._sites_by_statement[id(function)] = index
        return index.get(id(statement), [])


class _ModeRun:
    """One pass of the mode analysis over a function body for one model key."""

    def __init__(self, tracker: ModeTracker, function: Function, key: str, entry: frozenset[str]):
        self.tracker = tracker
        self.model = tracker.model
        self.function = function
        self.key = key
        self.states: dict[int, frozenset[str]] = {}
        self.returned: frozenset[str] = frozenset()
        node = function.node
        body = node.body if isinstance(node, cst.FunctionDef) else node
        end = self._block(body, entry)
        self.exit = end | self.returned

    def _block(self, node: cst.CSTNode, state: frozenset[str]) -> frozenset[str]:
        statements = node.body if isinstance(node, (cst.IndentedBlock, cst.SimpleStatementSuite, cst.Module)) else [node]
        for statement in statements:
            state = self._statement(statement, state)
        return state

    def _record(self, statement: cst.CSTNode, state: frozenset[str]) -> None:
        key = id(statement)
        self.states[key] = self.states.get(key, frozenset()) | state

    def _statement(self, statement: cst.CSTNode, state: frozenset[str]) -> frozenset[str]:
        self._record(statement, state)
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            return state
        state = self._apply_calls(statement, state)
        if isinstance(statement, cst.SimpleStatementLine):
            return self._simple(statement, state)
        if isinstance(statement, cst.If):
            entered, skipped = self._narrowed(statement.test, state)
            taken = self._block(statement.body, entered)
            other = self._block(statement.orelse, skipped) if statement.orelse is not None else skipped
            if statement.orelse is not None and {taken, other} == {frozenset({TRAIN}), frozenset({EVAL})}:
                return frozenset({UNKNOWN})  # `if training: train() else: eval()`: a deliberate choice
            return taken | other
        if isinstance(statement, cst.Else):
            return self._block(statement.body, state)
        if isinstance(statement, (cst.For, cst.While)):
            entry = state
            for _ in range(3):  # the body's end flows back to its start
                end = self._block(statement.body, entry)
                if end <= entry:
                    break
                entry = entry | end
            # `for epoch in range(1, 61)` runs at least once: no path skips the body.
            after = self._block(statement.body, entry) if _always_runs(statement) else entry
            return self._block(statement.orelse, after) if statement.orelse is not None else after
        if isinstance(statement, cst.With):
            return self._block(statement.body, state)
        if isinstance(statement, (cst.Try, cst.TryStar)):
            body = self._block(statement.body, state)
            ends = self._block(statement.orelse, body) if statement.orelse is not None else body
            for handler in statement.handlers:
                ends = ends | self._block(handler.body, state | body)
            if statement.finalbody is not None:
                ends = self._block(statement.finalbody.body, ends)
            return ends
        body = getattr(statement, "body", None)
        return self._block(body, state) if isinstance(body, cst.BaseSuite) else state

    def _narrowed(self, test: cst.BaseExpression, state: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """The modes where the test of an ``if`` holds, and where it fails. ``if model.training``
        (or a name bound to it: timm's ``training = self.backbone.training``) tells the mode; and
        in ``if isinstance(model, nn.Module): model.eval()``, where the test fails the object has
        no modes at all, so that path says nothing about training mode."""
        negated = isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)
        flag = test.expression if negated else test
        if self._reads_training_flag(flag):
            return (frozenset({EVAL}), frozenset({TRAIN})) if negated else (frozenset({TRAIN}), frozenset({EVAL}))
        return state, frozenset({UNKNOWN}) if self._tests_the_model(test) else state

    def _reads_training_flag(self, expr: cst.BaseExpression) -> bool:
        flag = f"{self.key}.training"
        if isinstance(expr, cst.Name):
            bound = self.function.assignments.get(expr.value, [])
            return len(bound) == 1 and bound[0].value is not None and dotted(bound[0].value) == flag
        return dotted(expr) == flag

    def _tests_the_model(self, test: cst.BaseExpression) -> bool:
        if isinstance(test, cst.Call) and dotted(test.func) in ("isinstance", "hasattr") and test.args:
            return dotted(test.args[0].value) == self.key
        return False

    def _simple(self, statement: cst.SimpleStatementLine, state: frozenset[str]) -> frozenset[str]:
        for small in statement.body:
            if isinstance(small, (cst.Return, cst.Raise)):
                if isinstance(small, cst.Return):
                    self.returned |= state
                return frozenset()
            if isinstance(small, (cst.Break, cst.Continue)):
                return frozenset()
            if isinstance(small, (cst.Assign, cst.AnnAssign)):
                state = self._assignment(small, state)
        return state

    def _assignment(self, node: cst.CSTNode, state: frozenset[str]) -> frozenset[str]:
        targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        if not any(dotted(t) == self.key for t in targets) or node.value is None:
            return state
        mode = self._mode_of_new_value(node.value)
        return state if mode == KEEP else frozenset({mode})

    def _mode_of_new_value(self, value: cst.BaseExpression) -> str:
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            method = value.func.attr.value
            if method == "eval":
                return EVAL
            if method == "train":
                return train_call_mode(value)
        if _wraps(value, self.key):
            return KEEP
        loaded = roles.loaded_mode(self.model, value)
        if loaded is not None:
            return loaded
        role = roles.role_of_value(self.model, value, self.function)
        if role is not None and role.kind == "model" and role.source is not None:
            return _constructed_mode(self.model.external.get(role.detail, frozenset()))
        return UNKNOWN

    def _apply_calls(self, statement: cst.CSTNode, state: frozenset[str]) -> frozenset[str]:
        for site in self.tracker.sites_in(self.function, statement):
            if site.receiver is not None and site.method in ("eval", "train"):
                if self.model.canonical(site.receiver, self.function) == self.key or site.receiver == self.key:
                    state = frozenset({EVAL if site.method == "eval" else train_call_mode(site.node)})
                    continue
            callees = self.model.callees(site)
            for callee in callees:
                callee_key = self._callee_key(site, callee)
                if callee_key is None:
                    continue
                state = _after(self.tracker.exit_effect(callee, callee_key), state)
            if not callees:
                state = _after(self._effect_elsewhere(site), state)
        return state

    def _effect_elsewhere(self, site: CallSite) -> frozenset[str]:
        """What a function of another file of the project does to the mode of the model under
        this key when it is handed it (crossfile.py's EXIT_MODE_PREFIX tags)."""
        tags = self.model.external.get(site.callee or "", ())
        positional, keywords = call_args(site.node)
        for tag in tags:
            if not tag.startswith(EXIT_MODE_PREFIX):
                continue
            index, param, modes = tag[len(EXIT_MODE_PREFIX):].split(":")
            value = keywords.get(param) if param in keywords else positional[int(index)] if int(index) < len(positional) else None
            if value is not None and dotted(value) == self.key:
                return frozenset(modes.split("+"))
        return frozenset({KEEP})

    def _callee_key(self, site: CallSite, callee: Function) -> Optional[str]:
        head, dot, rest = self.key.partition(".")
        if head == "self":
            return self.key if callee.cls is not None else None
        for param, argument_key in self.model.bind_arguments(site, callee).items():
            if argument_key == self.key:
                return param
        return None if head in callee.params else self.key


def _after(effect: frozenset[str], state: frozenset[str]) -> frozenset[str]:
    """The modes after a call whose exit effect is ``effect`` ("keep": as before it)."""
    if not effect or effect == {KEEP}:
        return state
    return (effect - {KEEP}) | (state if KEEP in effect else frozenset())


def _constructed_mode(tags: frozenset[str]) -> str:
    """A freshly built nn.Module starts in training mode, unless its class, in another file of
    the project, is known to leave it otherwise (crossfile.py)."""
    if BUILT_EVAL in tags:
        return EVAL
    return UNKNOWN if BUILT_WRAPPING in tags else TRAIN


def _wraps(value: cst.BaseExpression, key: str) -> bool:
    """``model.to(device)``, ``torch.compile(model)``, ``DataParallel(model)``, ``deepcopy(model)``,
    and wrappers of wrappers (``torch.jit.script(to_graph_module(model))``): the same module (or
    one that runs it) in the mode it was in."""
    if not isinstance(value, cst.Call):
        return False
    func = value.func
    if isinstance(func, cst.Attribute) and func.attr.value in roles.MODEL_MOVING_METHODS and dotted(func.value) == key:
        return True
    positional, _ = call_args(value)
    return bool(positional) and (dotted(positional[0]) == key or _wraps(positional[0], key))


def _always_runs(loop: cst.CSTNode) -> bool:
    """A ``for`` over ``range`` of integer literals that is not empty, with no ``break`` inside
    (a break could leave before what follows it in the body)."""
    if not isinstance(loop, cst.For) or any(isinstance(node, cst.Break) for node in walk(loop.body)):
        return False
    call = loop.iter
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value == "range"):
        return False
    bounds = [_int_literal(arg.value) for arg in call.args]
    if not bounds or None in bounds or any(arg.keyword or arg.star for arg in call.args):
        return False
    start, stop, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds[:2], bounds[2] if len(bounds) == 3 else 1)
    return step > 0 and start < stop


def _int_literal(expr: cst.BaseExpression) -> Optional[int]:
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus) and isinstance(expr.expression, cst.Integer):
        return -int(expr.expression.value.replace("_", ""), 0)
    return None


def train_call_mode(call: cst.Call) -> str:
    mode = argument(call, 0, "mode")
    if isinstance(mode, cst.Name) and mode.value == "False":
        return EVAL
    if mode is None or (isinstance(mode, cst.Name) and mode.value == "True"):
        return TRAIN
    return UNKNOWN
