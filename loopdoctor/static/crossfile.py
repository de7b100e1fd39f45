"""What a file learns from the other files of its project: what the local modules it imports
define (here), and how the files that import it call its functions (``callers.py``).

A model defined in ``network.py`` whose ``forward`` returns ``F.softmax(...)``, trained with
``CrossEntropyLoss`` in ``train.py``; ``model = GPT(config)`` built from ``model.py`` and
evaluated in ``sample.py``; ``train_one_epoch(model, ...)`` of ``train.py``, which calls
``model.train()``, called from ``main.py``: common shapes. For a file that names a loss that
cares or evaluates, the modules it imports are found on disk (never imported): beside the file
(``from network import Net``), relative to its package (``from .network import Net``), or under
the directory above its package. Two steps: ``dependencies`` finds, by text search and ``stat``
alone, the local modules whose classes or functions the file calls; their paths, times and
sizes go into the file's cache key, so editing ``network.py`` re-checks ``train.py`` (what the
text searches find is remembered across runs by the bytes searched: ``text_memo.py``). ``facts``
then parses those modules (in the worker, and only when their text could answer) and answers
keyed the way the importing file spells the name (``network.Net``, ``.network.Net``), with tags:
an nn.Module class, the squash its output ends in, how its constructor leaves its mode, its
mode-dependent layers; a function, the mode it leaves each parameter in.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from typing import NamedTuple, Optional

from loopdoctor.static import text_memo
from loopdoctor.static.rules.catalog import CATALOG

# Loss names of the rules that ask where probabilities come from (LD001, LD011, LD012).
LOSS_TOKENS = tuple(token.encode() for rule in CATALOG for token in rule.crossfile_tokens)
# A file that evaluates asks whether what it builds from a local class is a model, and in which
# mode its constructor leaves it (LD003).
EVALUATION_TOKENS = re.compile(rb"no_grad|inference_mode|evaluat|validat|\btest")
# Tags of a local model class beside its squashes: every nn.Module class has MODULE; its
# constructor may leave it in eval mode (BUILT_EVAL) or wrap a module made elsewhere, whose mode
# it keeps (BUILT_WRAPPING); else a new one is in training mode.
MODULE, BUILT_EVAL, BUILT_WRAPPING = "module", "built-eval", "built-wrapping"
# Its mode-dependent layers, where every layer it builds is known: LAYERS_KNOWN, and one
# LAYER_PREFIX + "Dropout" / "BatchNorm" tag each.
LAYERS_KNOWN, LAYER_PREFIX = "layers-known", "layer:"
# A module-level function that leaves a model it is handed in a mode (``model.train()`` inside
# ``train_one_epoch(model, ...)``): one EXIT_MODE_PREFIX + "index:param:mode[+mode]" tag per
# such parameter, "keep" standing for "as it came in" (flow.py's exit effects).
EXIT_MODE_PREFIX = "exit-mode:"
SQUASH_TOKENS = {"softmax": ("softmax", "Softmax"), "sigmoid": ("sigmoid", "Sigmoid", "expit")}
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n;#]+)", re.M)
PLAIN_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n;#]+)", re.M)
IMPORTED_NAME = re.compile(r"([\w.]+)(?:\s+as\s+(\w+))?")
Facts = dict[str, frozenset[str]]  # "network.Net" -> {"module", "softmax"}
# (((module path, mtime_ns, size, (("network.Net", "Net"), ...)), ...), callers.Dependencies):
# hashable and picklable
Dependencies = tuple


class ProjectFacts(NamedTuple):
    squashes: Facts  # model classes of imported local modules: "network.Net" -> {"module", "softmax"}
    calls: dict  # function of this file -> its calls in other files (callers.CallerFacts)


NO_FACTS = ProjectFacts({}, {})


def dependencies(path: str, data: bytes) -> Dependencies:
    """The project files that the verdict on ``path`` rests on, with their times and sizes: the
    local modules it imports classes from, and the files that call its functions. Cheap (text
    search and ``stat``), so it can key the cache before anything is parsed."""
    from loopdoctor.static import callers

    return (_imported(path, data), callers.dependencies(path, data))


def facts(dependencies: Dependencies) -> ProjectFacts:
    """What those files say, parsed in the worker."""
    from loopdoctor.static import callers

    imported, calling = dependencies
    return ProjectFacts(_squashes(imported), callers.facts(calling))


def _imported(path: str, data: bytes) -> tuple:
    """The local modules whose classes ``path`` calls. Empty unless the file names a loss that
    cares or evaluates."""
    if path.endswith(".ipynb") or not text_memo.remembered(data, "asks", lambda: _asks(data)):
        return ()
    try:
        here = os.path.dirname(os.path.abspath(path))
        return tuple(
            (*_stamp(module_path), tuple(sorted(wanted.items())))
            for module_path, wanted in sorted(_constructed_imports(data, here).items())
        )
    except (OSError, ValueError, RecursionError):  # odd paths or names: check the file on its own
        return ()


def _asks(data: bytes) -> bool:
    return any(token in data for token in LOSS_TOKENS) or EVALUATION_TOKENS.search(data) is not None


def _squashes(imported: tuple) -> Facts:
    """Classes, as the importing file spells them, that its local modules define as models,
    with what is known of them: whose output ends in a softmax or a sigmoid, and how their
    constructor leaves their mode. Parses the modules (in the worker)."""
    found: Facts = {}
    for path, mtime_ns, size, wanted in imported:
        exports = _module_exports(path, mtime_ns, size, frozenset(cls for _, cls in wanted))
        found.update((spelled, exports[cls]) for spelled, cls in wanted if cls in exports)
    return found


def _constructed_imports(data: bytes, here: str) -> dict[str, dict[str, str]]:
    """{module file: {name as the file spells it: name there}} for the local classes and functions
    it calls."""
    wanted: dict[str, dict[str, str]] = {}
    for level, module, spelled, name, head in text_memo.remembered(data, "called-imports", lambda: _called_imports(data)):
        if head and not _is_local(head, here):
            continue  # `from torch import nn`: nothing of this project
        found = _find(here, level, module)
        if found:
            wanted.setdefault(found, {})[spelled] = name
    return wanted


def _called_imports(data: bytes) -> list[list]:
    """From the text alone: [level, module, name as spelled, name there, the top-level package
    an absolute import comes from (else "")] for each imported class or function the file
    calls (``from network import Net`` then ``Net()``; ``import network`` or ``from . import
    network`` then ``network.Net()``)."""
    text = data.decode("utf-8", "replace")
    called = _Calls(text)
    found = []
    for dots, module, names in import_statements(data, text):
        if dots is None:  # `import network`: `names` is its alias
            for attribute in called.attributes_of(names or module):
                found.append([0, module, f"{module}.{attribute}", attribute, module.split(".")[0]])
            continue
        base, head = dots + module, "" if dots else module.split(".")[0]
        for name, alias in names:
            local = alias or name
            spelled = f"{base}{name}" if base.endswith(".") else f"{base}.{name}"
            if called.directly(local):
                found.append([len(dots), module, spelled, name, head])
            for attribute in called.attributes_of(local):
                found.append([len(dots), f"{module}.{name}" if module else name, f"{spelled}.{attribute}", attribute, head])
    return found


def import_statements(data: bytes, text: Optional[str] = None) -> list:
    """The file's imports, from its text alone and remembered: [[dots, module, [[name, alias],
    ...]], ...] for ``from ... import`` (``alias`` "" when none), and [[module, alias]] for
    each ``import``, with dots None."""
    def search() -> list:
        source = data.decode("utf-8", "replace") if text is None else text
        found: list = [[dots, module, [list(pair) for pair in IMPORTED_NAME.findall(names.strip("()"))]]
                       for dots, module, names in FROM_IMPORT.findall(source)]
        found += [[None, module, alias] for spec in PLAIN_IMPORT.findall(source) for module, alias in IMPORTED_NAME.findall(spec)]
        return found

    return text_memo.remembered(data, "imports", search)


class _Calls:
    """Which imported names a file calls, found with ``str.find`` (a regex per name costs more
    to compile than to run, and one regex for every call scans each character in Python's
    engine)."""

    def __init__(self, text: str):
        self.text = text

    def directly(self, name: str) -> bool:
        """``Net(``, not ``x.Net(``."""
        return next(calls(self.text, name, after_dot=False), None) is not None

    def attributes_of(self, prefix: str) -> list[str]:
        """``Net`` for ``network.Net(``."""
        found = set()
        for end in occurrences(self.text, prefix + ".", after_dot=False):
            attribute = IDENTIFIER.match(self.text, end)
            if attribute and _opens_call(self.text, attribute.end()):
                found.add(attribute.group())
        return sorted(found)


IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def occurrences(text: str, word: str, *, after_dot: bool):
    """Where each occurrence of ``word`` ends that does not continue a longer name (nor, unless
    ``after_dot``, follow a dot)."""
    start = text.find(word)
    while start >= 0:
        before = text[start - 1] if start else " "
        if not (before.isalnum() or before == "_" or (before == "." and not after_dot)):
            yield start + len(word)
        start = text.find(word, start + 1)


def calls(text: str, name: str, *, after_dot: bool):
    """Where each call of ``name`` (``name(``, spaces allowed before the parenthesis) ends."""
    return (end for end in occurrences(text, name, after_dot=after_dot) if _opens_call(text, end))


def _opens_call(text: str, index: int) -> bool:
    while index < len(text) and text[index] in " \t\r\n\f\v":
        index += 1
    return index < len(text) and text[index] == "("


@lru_cache(maxsize=8192)
def _find(here: str, level: int, module: str) -> Optional[str]:
    """The file of ``module`` imported with ``level`` leading dots from a file in ``here``."""
    if level:
        roots = [here]
        for _ in range(level - 1):
            roots = [os.path.dirname(roots[0])]
    else:
        roots = [here, _package_parent(here)]
    relative = module.replace(".", os.sep) if module else ""
    for root in dict.fromkeys(roots):
        for candidate in (os.path.join(root, relative + ".py"), os.path.join(root, relative, "__init__.py")):
            if relative and os.path.isfile(candidate):
                return candidate
    return None


def _is_local(head: str, here: str) -> bool:
    """Could an absolute import starting with ``head`` name a module of this project?"""
    return any(head in _entries(root) or f"{head}.py" in _entries(root) for root in (here, _package_parent(here)))


@lru_cache(maxsize=1024)
def _entries(directory: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(directory))
    except OSError:
        return frozenset()


def forget() -> None:
    """Drop what was learnt about directories and files: each run looks at the disk afresh."""
    from loopdoctor.static import callers

    _entries.cache_clear()
    _package_parent.cache_clear()
    _find.cache_clear()
    text_memo.forget()
    callers.forget()


@lru_cache(maxsize=1024)
def _package_parent(directory: str) -> str:
    """The directory above the outermost package holding ``directory`` (itself if none)."""
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def read_neighbour(path: str, errors: str = "strict") -> Optional[str]:
    """The text of another file of the project, or None."""
    data = read_neighbour_bytes(path)
    try:
        return data.decode("utf-8", errors) if data is not None else None
    except UnicodeDecodeError:
        return None


def read_neighbour_bytes(path: str) -> Optional[bytes]:
    """The bytes of another file of the project, or None. Only a regular file is read: a FIFO
    named ``*.py`` would block the check forever."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _stamp(path: str) -> tuple[str, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return path, 0, 0
    return path, info.st_mtime_ns, info.st_size


@lru_cache(maxsize=512)
def _module_exports(path: str, mtime_ns: int, size: int, classes: frozenset[str]) -> Facts:
    """Which of ``classes`` (the names another file calls) one file defines as models
    (nn.Module subclasses, as far as the file shows), or as functions that set the mode of a
    model they are handed, with their tags. The file is parsed only when its text could
    define one."""
    text = read_neighbour(path)
    if text is None:
        return {}
    squashes = [name for name, tokens in SQUASH_TOKENS.items() if any(t in text for t in tokens)]
    defined = "def forward" in text and any(re.search(rf"^[ \t]*class[ \t]+{re.escape(cls)}\b", text, re.M) for cls in classes)
    sets_modes = (".train(" in text or ".eval(" in text) and any(re.search(rf"^def[ \t]+{re.escape(f)}\b", text, re.M) for f in classes)
    if not defined and not sets_modes:
        return {}
    import libcst as cst

    from loopdoctor.static import roles
    from loopdoctor.static.model import SemanticModel
    from loopdoctor.static.probabilities import Probabilities

    try:
        model = SemanticModel(cst.parse_module(text))
    except Exception:  # a broken neighbour is reported when it is checked itself, not here
        return {}
    exports: Facts = {}
    for name, cls in model.classes.items():
        forward = cls.methods.get("forward")
        if name not in classes or not cls.is_module or forward is None:
            continue
        found = {s for s in squashes if Probabilities(model, s).function_returns_softmax(forward, 0)}
        layers = roles.layers_of_class(model, cls)
        known = {LAYERS_KNOWN, *(LAYER_PREFIX + layer for layer in layers)} if layers is not None else set()
        exports[name] = frozenset({MODULE, *found, *_construction_tags(model, cls), *known})
    if sets_modes:
        exports.update(_mode_setting_functions(model, classes))
    return exports


def _mode_setting_functions(model, names: frozenset[str]) -> Facts:
    from loopdoctor.static.flow import KEEP, Flow

    flow = Flow(model)
    found: Facts = {}
    for function in model.functions:
        if function.name not in names or function.cls is not None or function.parent is not model.top:
            continue
        tags = set()
        for index, param in enumerate(function.params):
            effect = flow.exit_mode(function, param)
            if effect and effect != {KEEP}:
                tags.add(f"{EXIT_MODE_PREFIX}{index}:{param}:{'+'.join(sorted(effect))}")
        if tags:
            found[function.name] = frozenset(tags)
    return found


def _construction_tags(model, cls) -> set[str]:
    """How the constructor leaves the mode: ``self.eval()`` (or any ``.eval()``) in ``__init__``
    -> BUILT_EVAL; a submodule run in ``forward`` but made elsewhere (``self.model = model``,
    ``self.model = attempt_load(...)``: a module from a parameter or a function) -> BUILT_WRAPPING."""
    import libcst as cst

    init = cls.methods.get("__init__")
    if init is None:
        return set()
    if any(site.method == "eval" for site in init.calls):
        return {BUILT_EVAL}
    source = model.module.code_for_node(cls.node)
    for key, assignments in init.assignments.items():
        head, _, attribute = key.partition(".")
        if head != "self" or "." in attribute or f"self.{attribute}(" not in source:
            continue
        for assignment in assignments:
            value = assignment.value
            called = model.resolve(value.func) if isinstance(value, cst.Call) else None
            if called is None or not called.rsplit(".", 1)[-1][:1].isupper():
                return {BUILT_WRAPPING}  # not the construction of a class here
    return set()


def facts_tokens(facts: Facts) -> str:
    """Words that stand in, for the token prefilter, for the squashes found in other files."""
    return " ".join(sorted({squash for squashes in facts.values() for squash in squashes}))
