"""The semantic model of one Python file, built in a single walk.

Rules never walk the tree themselves. They ask this model questions about Python: what a name
resolves to through the imports, which loop encloses a call, which calls a loop makes directly or
through same-file helpers, and what value last reached a name before a given point. What a name
holds in torch terms (model, optimizer, loss, scaler, scheduler, data loader) is ``roles.py``'s
to say, over this model.

Every interesting node gets an *order* number from the walk (source order), which is how the
model answers "before" and "after" without computing line positions; positions are computed
only for files that end up with findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

import libcst as cst

from loopdoctor.config import AnalysisSettings
from loopdoctor.static.walk import iter_children

def words_of(identifier: str) -> set[str]:
    """``self.opt_g`` -> {"opt", "g", "opt_g"}; ``trainLoader`` -> {"train", "loader", ...}."""
    last = identifier.rsplit(".", 1)[-1]
    parts = [p.lower() for p in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", last) if p]
    return set(parts) | {last.lower()}


def dotted(expr: cst.CSTNode) -> Optional[str]:
    """``self.model.fc`` -> "self.model.fc"; anything that is not a plain name chain -> None."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = dotted(expr.value)
        return None if base is None else f"{base}.{expr.attr.value}"
    return None


def call_args(call: cst.Call) -> tuple[list[cst.BaseExpression], dict[str, cst.BaseExpression]]:
    positional, keywords = [], {}
    for arg in call.args:
        if arg.keyword is not None:
            keywords[arg.keyword.value] = arg.value
        elif not arg.star:
            positional.append(arg.value)
    return positional, keywords


def argument(call: cst.Call, index: int, keyword: str) -> Optional[cst.BaseExpression]:
    positional, keywords = call_args(call)
    if keyword in keywords:
        return keywords[keyword]
    return positional[index] if index < len(positional) else None


@dataclass(eq=False)
class Loop:
    node: cst.CSTNode
    function: "Function"
    parent: Optional["Loop"]
    start: int
    end: int = 0
    iter_key: Optional[str] = None
    children: list["Loop"] = field(default_factory=list)

    def contains(self, order: int) -> bool:
        return self.start <= order <= self.end

    def encloses(self, other: Optional["Loop"]) -> bool:
        while other is not None:
            if other is self:
                return True
            other = other.parent
        return False


@dataclass(eq=False)
class CallSite:
    node: cst.Call
    order: int
    function: "Function"
    loop: Optional[Loop]
    statement: cst.CSTNode
    grad_block: Optional[cst.CSTNode]  # innermost `with torch.no_grad()` (or similar) around it
    callee: Optional[str]  # resolved dotted name of what is called, e.g. "torch.nn.functional.softmax"
    receiver: Optional[str]  # for `x.y.method()`: "x.y"
    method: Optional[str]  # for `x.y.method()`: "method"
    # ((an enclosing `if`, "body" or "else"), ...), outermost first. The `if` is named by its
    # condition when that is a plain name (`if self.fp16:`), so that two ifs on one flag
    # correlate; else by the node.
    branches: tuple = ()

    def exclusive_with(self, other: "CallSite") -> bool:
        """Are the two calls in different branches of one `if`, so never both in one pass?"""
        mine = dict(self.branches)
        return any(mine.get(node, side) != side for node, side in other.branches)


@dataclass(eq=False)
class Assignment:
    key: str
    value: Optional[cst.BaseExpression]
    order: int
    function: "Function"
    loop: Optional[Loop]
    statement: cst.CSTNode
    unpack_index: Optional[int] = None  # `a, b = value`: which element this key takes


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    bases: list[str]
    methods: dict[str, "Function"] = field(default_factory=dict)

    is_module: bool = False  # set once every class is known (bases may be local classes)

    @property
    def is_lightning(self) -> bool:
        return any("Lightning" in base for base in self.bases)


@dataclass(eq=False)
class Function:
    node: cst.CSTNode  # FunctionDef, or the Module for top-level code
    name: str
    qualname: str
    cls: Optional[ClassInfo]
    parent: Optional["Function"]
    params: list[str] = field(default_factory=list)
    defaults: dict[str, cst.BaseExpression] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    decorators: list[str] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    assignments: dict[str, list[Assignment]] = field(default_factory=dict)
    mentions: dict[str, list[int]] = field(default_factory=dict)
    returns: list[tuple[int, Optional[cst.BaseExpression]]] = field(default_factory=list)  # (order, value)
    augmented: list["Assignment"] = field(default_factory=list)  # `total += value`
    start: int = 0
    end: int = 0

    @property
    def owner_class(self) -> Optional[ClassInfo]:
        function: Optional[Function] = self
        while function is not None:
            if function.cls is not None:
                return function.cls
            function = function.parent
        return None

    def assigned_in(self, key: str, loop: Optional[Loop], to_a_value: bool = False) -> bool:
        """Is ``key`` bound inside ``loop``, so that each iteration has a fresh one? With
        ``to_a_value``, only by an assignment (not as the target of a ``for``)."""
        return loop is not None and any(
            loop.contains(a.order) and (a.value is not None or not to_a_value) for a in self.assignments.get(key, ())
        )

    def iterates(self, key: str) -> bool:
        """Is ``key`` bound only as the target of ``for`` loops (``for opt in optimizers``)?"""
        bindings = self.assignments.get(key, ())
        return bool(bindings) and all(isinstance(a.statement, cst.For) for a in bindings)


class SemanticModel:
    """Everything the rules may ask about one parsed module."""

    def __init__(self, module: cst.Module, external=None, settings: AnalysisSettings = AnalysisSettings()):
        self.module = module
        self.settings = settings  # what the configuration says about the code (torch-version)
        # What the project's other files say (crossfile.ProjectFacts): model classes of imported
        # local modules whose output ends in a squash ("network.Net" -> {"softmax"}), and the
        # calls of this file's functions in other files (function name -> callers.ExternalCall's).
        self.external: dict[str, frozenset[str]] = external.squashes if external else {}
        self.external_calls: dict[str, tuple] = external.calls if external else {}
        self.imports: dict[str, str] = {}
        self.star_imports: list[str] = []
        self.classes: dict[str, ClassInfo] = {}
        self.functions: list[Function] = []
        self.by_name: dict[str, list[Function]] = {}
        self._role_cache: dict = {}  # roles.role_of's, per (function, key)
        self._role_stack: set[tuple[int, str]] = set()
        self._callers: Optional[dict[int, list[CallSite]]] = None
        _Builder(self).build(module)
        self.top = self.functions[0]
        for cls in self.classes.values():
            cls.is_module = roles.is_module_class(self, cls, set())

    def resolve(self, expr: cst.CSTNode) -> Optional[str]:
        """Dotted name with the first segment expanded through the imports."""
        name = dotted(expr)
        if name is None:
            return None
        return self.resolve_dotted(name)

    def resolve_dotted(self, name: str) -> str:
        head, _, rest = name.partition(".")
        target = self.imports.get(head)
        if target is None:
            return name
        return f"{target}.{rest}" if rest else target

    # ---- functions and calls -------------------------------------------------------------
    def callees(self, site: CallSite) -> list[Function]:
        """Same-file functions or methods that a call site may run."""
        func = site.node.func
        if isinstance(func, cst.Name):
            return [f for f in self.by_name.get(func.value, []) if f.cls is None]
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            cls = site.function.owner_class
            method = cls.methods.get(func.attr.value) if cls else None
            return [method] if method else []
        return []

    def call_sites_of(self, function: Function) -> list[CallSite]:
        """Every same-file call that may run ``function``."""
        if self._callers is None:
            self._callers = {}
            for site in self.iter_calls():
                for callee in self.callees(site):
                    self._callers.setdefault(id(callee), []).append(site)
        return self._callers.get(id(function), [])

    def bind_arguments(self, site: CallSite, callee: Function) -> dict[str, str]:
        """Map the callee's parameter names to the caller's argument keys (where dotted)."""
        params = [p for p in callee.params if p not in ("self", "cls")] if callee.cls else callee.params
        positional, keywords = call_args(site.node)
        mapping = {}
        for name, value in zip(params, positional):
            key = dotted(value)
            if key:
                mapping[name] = key
        for name, value in keywords.items():
            key = dotted(value)
            if key and name in params:
                mapping[name] = key
        return mapping

    # ---- values reaching a name ----------------------------------------------------------------
    def definitions(self, key: str, function: Function) -> list[Assignment]:
        """Every assignment that may define ``key`` as seen from ``function``."""
        if key.startswith("self."):
            cls = function.owner_class
            if cls is None:
                return []
            found = []
            for method in cls.methods.values():
                found.extend(method.assignments.get(key, []))
            return found
        scope: Optional[Function] = function
        while scope is not None:
            if key in scope.assignments or key in scope.params:
                return scope.assignments.get(key, [])
            scope = scope.parent
        return []

    def reaching_value(self, key: str, function: Function, order: int) -> Optional[Assignment]:
        """The last assignment to a local ``key`` before ``order`` in the same function."""
        best = None
        for assignment in function.assignments.get(key, []):
            if assignment.order < order and (best is None or assignment.order > best.order):
                best = assignment
        return best

    def canonical(self, key: str, function: Function) -> str:
        """Follow local aliases: after ``opt = self.optimizer``, "opt" -> "self.optimizer"."""
        for _ in range(4):
            definitions = function.assignments.get(key, [])
            if len(definitions) != 1 or definitions[0].unpack_index is not None:
                return key
            value = definitions[0].value
            target = dotted(value) if value is not None else None
            if not target or target == key or target in self.imports:
                return key
            key = target
        return key

    def iter_calls(self) -> Iterable[CallSite]:
        for function in self.functions:
            yield from function.calls


class _Builder:
    """The single walk that fills a SemanticModel."""

    def __init__(self, model: SemanticModel):
        self.model = model
        self.order = 0
        self.function: Optional[Function] = None
        self.loop: Optional[Loop] = None
        self.statement: Optional[cst.CSTNode] = None
        self.grad_block: Optional[cst.CSTNode] = None
        self.cls: Optional[ClassInfo] = None
        self.handlers = {
            cst.Import: self._import,
            cst.ImportFrom: self._import_from,
            cst.FunctionDef: self._function_def,
            cst.ClassDef: self._class_def,
            cst.For: self._loop,
            cst.While: self._loop,
            cst.With: self._with,
            cst.Call: self._call,
            cst.Assign: self._assign,
            cst.AnnAssign: self._ann_assign,
            cst.AugAssign: self._aug_assign,
            cst.Name: self._name,
            cst.Attribute: self._attribute,
            cst.Arg: self._arg,
            cst.Return: self._return,
            cst.SimpleStatementLine: self._statement,
            cst.Lambda: self._skip_params,
            cst.If: self._if,
        }
        self.branches: tuple = ()

    def build(self, module: cst.Module) -> None:
        top = Function(module, "<module>", "<module>", None, None)
        self.model.functions.append(top)
        self.function = top
        self._children(module)
        top.end = self.order

    def _next(self) -> int:
        self.order += 1
        return self.order

    def visit(self, node: cst.CSTNode) -> None:
        handler = self.handlers.get(type(node))
        if handler is not None:
            handler(node)
        else:
            if isinstance(node, cst.BaseCompoundStatement):
                saved, self.statement = self.statement, node
                self._children(node)
                self.statement = saved
            else:
                self._children(node)

    def _children(self, node: cst.CSTNode) -> None:
        for child in iter_children(node):
            self.visit(child)

    # ---- imports --------------------------------------------------------------------------------
    def _import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = dotted(alias.name)
            if full is None:
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.model.imports[alias.asname.name.value] = full
            else:
                head = full.split(".", 1)[0]
                self.model.imports[head] = head

    def _import_from(self, node: cst.ImportFrom) -> None:
        # `from ..pkg.mod import X` keeps its dots: X is "..pkg.mod.X", as crossfile.py spells it.
        base = "." * len(node.relative) + ((dotted(node.module) or "") if node.module is not None else "")
        if isinstance(node.names, cst.ImportStar):
            self.model.star_imports.append(base)
            return
        for alias in node.names:
            name = dotted(alias.name)
            if name is None:
                continue
            local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else name
            self.model.imports[local] = f"{base}{name}" if base.endswith(".") else f"{base}.{name}"

    # ---- scopes ---------------------------------------------------------------------------------
    def _function_def(self, node: cst.FunctionDef) -> None:
        parent = self.function
        qualname = f"{self.cls.name}.{node.name.value}" if self.cls else node.name.value
        function = Function(node, node.name.value, qualname, self.cls, parent, start=self._next())
        for decorator in node.decorators:
            target = decorator.decorator
            target = target.func if isinstance(target, cst.Call) else target
            function.decorators.append(self.model.resolve(target) or "")
            self.visit(decorator.decorator)
        self._record_params(function, node.params)
        self.model.functions.append(function)
        self.model.by_name.setdefault(node.name.value, []).append(function)
        if self.cls is not None:
            self.cls.methods[node.name.value] = function
        saved = (self.function, self.loop, self.grad_block, self.cls, self.statement)
        self.function, self.loop, self.cls, self.statement = function, None, None, None
        grad_decorator = any(roles.disables_grad(self.model, d) for d in function.decorators)
        self.grad_block = node if grad_decorator else None
        self.visit(node.body)
        function.end = self._next()
        self.function, self.loop, self.grad_block, self.cls, self.statement = saved

    def _record_params(self, function: Function, params: cst.Parameters) -> None:
        every = list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
        for extra in (params.star_arg, params.star_kwarg):
            if isinstance(extra, cst.Param):
                every.append(extra)
        for param in every:
            name = param.name.value
            function.params.append(name)
            if param.default is not None:
                function.defaults[name] = param.default
                self.visit(param.default)
            if param.annotation is not None:
                function.annotations[name] = self.model.resolve(param.annotation.annotation) or ""

    def _class_def(self, node: cst.ClassDef) -> None:
        for decorator in node.decorators:
            self.visit(decorator.decorator)
        for arg in (*node.bases, *node.keywords):
            self.visit(arg.value)
        bases = [self.model.resolve(arg.value) or "" for arg in node.bases]
        info = ClassInfo(node, node.name.value, bases)
        self.model.classes.setdefault(node.name.value, info)
        saved = self.cls
        self.cls = info
        self.visit(node.body)
        self.cls = saved

    def _skip_params(self, node: cst.Lambda) -> None:
        self.visit(node.body)

    # ---- statements -----------------------------------------------------------------------------
    def _statement(self, node: cst.SimpleStatementLine) -> None:
        saved, self.statement = self.statement, node
        self._children(node)
        self.statement = saved

    def _loop(self, node: cst.CSTNode) -> None:
        saved_statement, self.statement = self.statement, node
        loop = Loop(node, self.function, self.loop, start=self._next())
        if isinstance(node, cst.For):
            loop.iter_key = _iterated_key(node.iter)
            self.visit(node.iter)
            self._assign_target(node.target, None, node)
        else:
            self.visit(node.test)
        self.function.loops.append(loop)
        if self.loop is not None:
            self.loop.children.append(loop)
        saved_loop, self.loop = self.loop, loop
        self.visit(node.body)
        self.loop = saved_loop
        if node.orelse is not None:
            self.visit(node.orelse)
        loop.end = self._next()
        self.statement = saved_statement

    def _with(self, node: cst.With) -> None:
        saved_statement, self.statement = self.statement, node
        saved_block = self.grad_block
        for item in node.items:
            self.visit(item.item)
            if item.asname is not None:
                self._assign_target(item.asname.name, item.item, node)
            kind = self._grad_mode(item.item)
            if kind == "off":
                self.grad_block = node
            elif kind == "on":
                self.grad_block = None
        self.visit(node.body)
        self.grad_block = saved_block
        self.statement = saved_statement

    def _grad_mode(self, expr: cst.BaseExpression) -> Optional[str]:
        if not isinstance(expr, cst.Call):
            return None
        qualified = self.model.resolve(expr.func)
        if roles.disables_grad(self.model, qualified):
            # torch's take a mode (`inference_mode(False)`); a project's own, whatever it takes
            mode = argument(expr, 0, "mode") if qualified in roles.GRAD_DISABLING else None
            return "on" if isinstance(mode, cst.Name) and mode.value == "False" else "off"
        if qualified in roles.GRAD_ENABLING:
            return "on"
        if qualified in roles.GRAD_SWITCHES:
            mode = argument(expr, 0, "mode")
            if isinstance(mode, cst.Name):
                return {"False": "off", "True": "on"}.get(mode.value)
        return None

    def _if(self, node: cst.If) -> None:
        saved_statement, self.statement = self.statement, node
        self.visit(node.test)
        saved = self.branches
        key, body, orelse = _branch_key(node)
        self.branches = saved + ((key, body),)
        self.visit(node.body)
        if node.orelse is not None:
            self.branches = saved + ((key, orelse),)
            self.visit(node.orelse)
        self.branches = saved
        self.statement = saved_statement

    def _return(self, node: cst.Return) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.function.returns.append((self._next(), node.value))

    def _assign(self, node: cst.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._assign_target(target.target, node.value, node)

    def _ann_assign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self._assign_target(node.target, node.value, node)

    def _aug_assign(self, node: cst.AugAssign) -> None:
        self.visit(node.value)
        self.visit(node.target)  # an augmented target is read as well as written
        key = dotted(node.target)
        if key is not None:
            self.function.augmented.append(Assignment(key, node.value, self._next(), self.function, self.loop, node))

    def _assign_target(self, target: cst.CSTNode, value: Optional[cst.BaseExpression], stmt: cst.CSTNode) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for index, element in enumerate(target.elements):
                key = dotted(element.value)
                if key is not None:
                    self._record_assignment(key, value, stmt, index)
                else:
                    self.visit(element.value)
            return
        key = dotted(target)
        if key is None:
            self.visit(target)  # `d[k] = v` reads d and k
            container = dotted(target.value) if isinstance(target, cst.Subscript) else None
            if container is not None:
                self._record_assignment(container + "[]", value, stmt, None)
            return
        self._record_assignment(key, value, stmt, None)
        if isinstance(target, cst.Attribute):
            self.visit(target.value)

    def _record_assignment(self, key: str, value, stmt, index) -> None:
        assignment = Assignment(key, value, self._next(), self.function, self.loop, stmt, index)
        self.function.assignments.setdefault(key, []).append(assignment)

    # ---- expressions ----------------------------------------------------------------------------
    def _call(self, node: cst.Call) -> None:
        func = node.func
        receiver = method = None
        if isinstance(func, cst.Attribute):
            receiver, method = dotted(func.value), func.attr.value
        site = CallSite(
            node, self._next(), self.function, self.loop, self.statement or node, self.grad_block,
            self.model.resolve(func), receiver, method, self.branches,
        )
        self.function.calls.append(site)
        self.visit(func)
        for arg in node.args:
            self.visit(arg.value)

    def _arg(self, node: cst.Arg) -> None:
        self.visit(node.value)

    def _name(self, node: cst.Name) -> None:
        self.function.mentions.setdefault(node.value, []).append(self.order)

    def _attribute(self, node: cst.Attribute) -> None:
        key = dotted(node)
        if key is not None:
            self.function.mentions.setdefault(key, []).append(self.order)
        else:
            self.visit(node.value)


def _branch_key(node: cst.If) -> tuple:
    """(key, side of the body, side of the else): ``if flag:`` and ``if not flag:`` share the
    key ``flag`` (a name or attribute chain); any other condition is its own ``if``."""
    test, negated = node.test, False
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, negated = test.expression, True
    name = dotted(test)
    if name is None:
        return id(node), "body", "else"
    return (f"if {name}", "else", "body") if negated else (f"if {name}", "body", "else")


def _iterated_key(expr: cst.BaseExpression) -> Optional[str]:
    """``enumerate(tqdm(val_loader))`` -> "val_loader"."""
    for _ in range(4):
        if isinstance(expr, cst.Call) and expr.args:
            expr = expr.args[0].value
        else:
            break
    return dotted(expr)


# The torch vocabulary builds on this module, so it comes last (a cycle resolved at call time).
from loopdoctor.static import roles  # noqa: E402
