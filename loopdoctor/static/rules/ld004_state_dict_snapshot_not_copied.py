"""LD004: a ``state_dict()`` kept as a snapshot while training goes on, without a copy."""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import SAFE, FixPlan, Replace, spelling
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import Assignment, CallSite, Function, Loop, SemanticModel, call_args, dotted
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation
from loopdoctor.static.walk import walk
from loopdoctor.static import roles

SHALLOW_COPIES = ("copy.copy", "dict", "collections.OrderedDict", "OrderedDict")
# Tensor methods that return the same storage on a CPU tensor: `{k: v.detach() ...}` still aliases.
ALIASING_METHODS = ("detach", "cpu", "float", "view", "reshape", "contiguous")
CONTAINER_STORES = ("append", "extend", "insert", "add", "update", "setdefault", "put")
NOT_SNAPSHOT_ROLES = ("scheduler", "scaler", "loader")


class StateDictSnapshotNotCopied(Rule):
    code = "LD004"
    name = "state-dict-snapshot-not-copied"
    summary = "`state_dict()` kept as a snapshot while training continues, without `copy.deepcopy`"
    fix_hint = "store `copy.deepcopy(model.state_dict())` (or `{k: v.detach().clone() ...}`)"
    required_tokens = (("state_dict",), (*BACKWARD_CALL, *STEP_CALL, "load_state_dict("))

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        reported: set[int] = set()  # a snapshot both outlived by training and shared: once
        for violation in self._violations(semantic, flow):
            if id(violation.node) not in reported:
                reported.add(id(violation.node))
                yield violation

    def _violations(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            yield from self._shared_optimizer_state(semantic, function)
            for assignments in function.assignments.values():
                for assignment in assignments:
                    value = assignment.value
                    if value is not None and assignment.unpack_index is not None:
                        value = roles.unpacked(semantic, value, assignment.unpack_index)
                    if value is None:
                        continue
                    for call, stored in self._snapshots(semantic, value, function):
                        if _outlived_by_training(semantic, flow, assignment):
                            yield self._violation(semantic, call, stored)
            for site in function.calls:
                if site.method in CONTAINER_STORES and site.receiver and _in_training(flow, site.loop, function):
                    if function.assigned_in(site.receiver.split(".", 1)[0], site.loop):
                        continue  # a fresh container each iteration
                    if _only_saved(function, site.receiver):
                        continue  # `ckpt.update(opt=opt.state_dict()); torch.save(ckpt, path)`: written out at once
                    for arg in site.node.args:
                        for call, stored in self._snapshots(semantic, arg.value, function):
                            yield self._violation(semantic, call, stored)

    def _shared_optimizer_state(self, semantic: SemanticModel, function: Function) -> Iterator[Violation]:
        """``second.load_state_dict(first.state_dict())`` between two optimizers, either of which
        steps afterwards. Unlike a module's, an optimizer's ``load_state_dict`` keeps the given
        state tensors where device and dtype match, so the two then update one shared state."""
        for site in function.calls:
            target = site.receiver
            if site.method != "load_state_dict" or not roles.has_role(semantic, target, function, "optimizer"):
                continue
            for call, stored in self._loaded_snapshots(semantic, site, function):
                source = dotted(call.func.value) if isinstance(call.func, cst.Attribute) else None
                if source is None or source == target or not roles.has_role(semantic, source, function, "optimizer"):
                    continue
                if any(later.method == "step" and later.receiver in (source, target) and later.order > site.order
                       for later in function.calls):
                    yield self._violation(semantic, call, stored, shared_with=target)

    def _loaded_snapshots(self, semantic: SemanticModel, site: CallSite, function: Function) -> list[tuple[cst.Call, cst.BaseExpression]]:
        """The uncopied state dicts a ``load_state_dict`` call is given: in the call, or in the
        name it is given as last bound before it."""
        positional, keywords = call_args(site.node)
        given = positional[0] if positional else keywords.get("state_dict")
        if isinstance(given, cst.Name):
            bound = [a for a in function.assignments.get(given.value, ()) if a.order < site.order and a.value is not None]
            given = max(bound, key=lambda a: a.order).value if bound else None
        return self._snapshots(semantic, given, function) if given is not None else []

    def _violation(self, semantic: SemanticModel, call: cst.Call, stored: Optional[cst.BaseExpression],
                   shared_with: Optional[str] = None) -> Violation:
        """``stored``: the expression to wrap in a deep copy; None for a key-by-key
        comprehension, which gets no fix."""
        if stored is None:
            return Violation(
                call,
                "this `state_dict()` is copied key by key with `.detach()` / `.cpu()`, which return the "
                "same storage for a CPU tensor: later optimizer steps overwrite the snapshot",
            )
        plan = None
        if stored is not None:
            deepcopy, imports = spelling(semantic.imports, semantic.module, "copy.deepcopy")
            plan = FixPlan(
                SAFE,
                f"store `{deepcopy}(...)` of the state dict",
                (Replace(stored, f"{deepcopy}({semantic.module.code_for_node(call)})"), *imports),
            )
        if shared_with is not None:
            return Violation(
                call,
                f"this optimizer `state_dict()` is loaded into `{shared_with}` without a copy: an optimizer's "
                "`load_state_dict` keeps the same state tensors (momenta, Adam's moments) where device and dtype "
                "match, so both optimizers step one shared state",
                plan,
            )
        return Violation(
            call,
            "this `state_dict()` holds references to the live tensors, not copies: later "
            "optimizer steps overwrite the snapshot (`.copy()` and `dict()` are shallow)",
            plan,
        )

    def _snapshots(self, semantic: SemanticModel, value: cst.BaseExpression, function: Function) -> list[tuple[cst.Call, cst.BaseExpression]]:
        """``(state_dict() call, the expression stored)`` pairs where ``value`` stores a state
        dict without copying its tensors (the expression is the call itself or a shallow copy)."""
        if isinstance(value, cst.Dict):
            found = []
            for element in value.elements:
                if isinstance(element, cst.DictElement):
                    found.extend(self._snapshots(semantic, element.value, function))
            return found
        if isinstance(value, (cst.List, cst.Tuple)):
            return [pair for e in value.elements for pair in self._snapshots(semantic, e.value, function)]
        if isinstance(value, cst.DictComp):
            return self._aliasing_comprehension(semantic, value, function)
        if not isinstance(value, cst.Call):
            return []
        if semantic.resolve(value.func) in ("dict", "collections.OrderedDict", "OrderedDict"):
            _, keywords = call_args(value)  # dict(model=model.state_dict(), epoch=epoch)
            found = [pair for v in keywords.values() for pair in self._snapshots(semantic, v, function)]
            if found:
                return found
        func = value.func
        if isinstance(func, cst.Attribute) and func.attr.value == "state_dict":
            receiver = dotted(func.value)
            role = roles.role_of(semantic, receiver, function) if receiver else None
            return [] if role is not None and role.kind in NOT_SNAPSHOT_ROLES else [(value, value)]
        inner: Optional[cst.BaseExpression] = None
        if isinstance(func, cst.Attribute) and func.attr.value == "copy" and not value.args:
            inner = func.value
        elif semantic.resolve(func) in SHALLOW_COPIES:
            positional, _ = call_args(value)
            inner = positional[0] if len(positional) == 1 else None
        if inner is None:
            return []
        return [(call, value) for call, _ in self._snapshots(semantic, inner, function)]


    def _aliasing_comprehension(self, semantic: SemanticModel, comp: cst.DictComp, function: Function) -> list:
        """``{k: v.detach() for k, v in model.state_dict().items()}``: on CPU ``detach()`` and
        ``cpu()`` return the same storage, so this is no copy (``.clone()`` would be). Reported
        at the comprehension, without a fix (the comprehension is the author's to change)."""
        source = comp.for_in.iter
        if not (isinstance(source, cst.Call) and isinstance(source.func, cst.Attribute) and source.func.attr.value == "items"):
            return []
        inner = self._snapshots(semantic, source.func.value, function)
        value = comp.value
        while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in ALIASING_METHODS:
            value = value.func.value
        if not inner or not isinstance(value, cst.Name):
            return []  # the values are cloned, converted or computed
        return [(inner[0][0], None)]


def _in_training(flow: Flow, loop: Optional[Loop], function: Function) -> bool:
    while loop is not None:
        if flow.is_training_loop(loop):
            return True
        loop = loop.parent
    return flow.called_from_training_loop(function)


def _outlived_by_training(semantic: SemanticModel, flow: Flow, assignment: Assignment) -> bool:
    """Does training run between the snapshot and a later read of it?"""
    function, key = assignment.function, assignment.key
    if key.endswith("[]"):
        container = key[:-2]
        if function.assigned_in(container.split(".", 1)[0], assignment.loop):
            return False  # a fresh container each iteration
        if "." in container or container not in function.assignments:  # an attribute, parameter or global
            return _in_training(flow, assignment.loop, function)
        key = container  # a container made in this function lives as long as a local name does
    if key.startswith("self."):
        return _in_training(flow, assignment.loop, function) or _restored_by_another_method(function, key)
    loop = assignment.loop
    while loop is not None:
        if flow.is_training_loop(loop):
            return _read_after(function, key, loop.end) or _read_before_in_loop(function, key, loop, assignment)
        loop = loop.parent
    later_training = [l for l in function.loops if l.start > assignment.order and flow.is_training_loop(l)]
    return any(_read_after(function, key, l.start) for l in later_training)


def _only_saved(function: Function, container: str) -> bool:
    """Is the local container only built, stored into and handed to a ``save`` call? Then it
    is written out with the values of the moment, and nothing reads the stale tensors later."""
    if "." in container:
        return False
    mentions = accounted = 0
    for node in walk(function.node):
        if isinstance(node, cst.Name) and node.value == container:
            mentions += 1
        elif isinstance(node, cst.Call):
            func = dotted(node.func) or ""
            if func.startswith(container + ".") and func.rsplit(".", 1)[-1] in CONTAINER_STORES:
                accounted += 1
            elif func.rsplit(".", 1)[-1] == "save":
                accounted += sum(1 for arg in node.args if dotted(arg.value) == container)
        elif isinstance(node, cst.Assign):
            accounted += sum(1 for target in node.targets if dotted(target.target) == container)
    return mentions == accounted


def _restored_by_another_method(function: Function, key: str) -> bool:
    """A snapshot kept on ``self`` in one method and loaded back in another (a best-weights
    callback: ``on_epoch_end`` keeps it, ``on_train_end`` restores it): the weights change in
    between, or there would be nothing to restore."""
    cls = function.owner_class
    if cls is None or function.name == "__init__":
        return False
    return any(
        site.method == "load_state_dict" and any(dotted(arg.value) == key for arg in site.node.args)
        for method in cls.methods.values() if method is not function for site in method.calls
    )


def _read_after(function: Function, key: str, order: int) -> bool:
    """Is the value ``key`` holds at ``order`` read later, before the name is bound anew? (A
    name rebound after the loop and saved again holds a new state dict, not the stale one.)"""
    # A name read right after a loop carries the loop's end order (nothing numbered in between).
    rebound = min((a.order for a in function.assignments.get(key, ()) if a.order >= order), default=None)
    return any(o >= order and (rebound is None or o < rebound) for o in function.mentions.get(key, ()))


def _read_before_in_loop(function: Function, key: str, loop: Loop, assignment: Assignment) -> bool:
    """Read earlier in the loop body, i.e. in the next iteration, after more training."""
    return any(loop.start < o < assignment.order for o in function.mentions.get(key, ()))
