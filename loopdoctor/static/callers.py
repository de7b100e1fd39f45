"""What a file learns from the project files that import it: how its functions are called.

``def evaluate(model, loader)`` under ``no_grad`` cannot tell from its own file whether the model
arrives in eval mode when the callers live elsewhere (``main.py`` builds the model, trains it and
calls ``evaluate(model, ...)``). For a file that defines such a function, the other Python files
of its project (the directory above its outermost package) are searched by text, never
imported, for imports of the file's module followed by a call of one of its functions.
``dependencies`` lists those callers with their times and sizes: they go into the file's cache
key, so editing a caller re-checks the callee. ``facts`` then parses each caller (in the worker)
and says, for every call of one of the file's functions, the train/eval modes that each dotted
argument may be in at the call (``flow.py``'s mode analysis, within the caller's own file).
"""

from __future__ import annotations

import ast
import os
import re
from functools import lru_cache
from typing import NamedTuple, Optional

from loopdoctor.static import crossfile, text_memo

# Only a module-level function with parameters that runs something under a grad-disabling
# context or in an evaluation loop asks how it is called (LD003), and one named for prediction
# (``predict_snli(net, ...)``), which runs its model for outputs whether or not it disables
# gradients.
DEFINES_FUNCTION = re.compile(r"^def[ \t]+(\w+)[ \t]*\([ \t]*\w", re.M)
EVALUATES = re.compile(r"no_grad|inference_mode|\bfor\b[^\n]*\bin\b[^\n]*(?:val|valid|test|eval|dev)", re.I)
PREDICTION_PREFIXES = ("predict", "infer")
SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"})
MAX_PROJECT_FILES = 5000
MAX_CALL_DEPTH = 3  # same-file calls followed from a caller to the function that evaluates
# (the checked file's directory, ((caller path, mtime_ns, size, (module as the caller spells it,
# ...), the caller's own crossfile dependencies), ...)), or () when the file asks nothing
Dependencies = tuple


class ExternalCall(NamedTuple):
    """One call, in another file, of a function defined in the checked file."""

    path: str  # relative to the checked file's directory
    line: int
    positional: tuple  # per positional argument: the modes it may be in, or None (not a dotted name)
    keywords: tuple  # ((keyword, modes or None), ...)
    unpacks: bool  # a `*args` among the arguments: positions after it are not known


CallerFacts = dict[str, tuple]  # function name -> (ExternalCall, ...)


def dependencies(path: str, data: bytes) -> Dependencies:
    """The project files that import ``path`` and may call one of its module-level functions:
    text search and ``stat`` only, so it can key the cache before anything is parsed."""
    if path.endswith(".ipynb"):
        return ()
    try:
        defined = frozenset(text_memo.remembered(data, "evaluating", lambda: sorted(_evaluating_functions(data.decode("utf-8", "replace")))))
        if not defined:
            return ()
        target = os.path.abspath(path)
        importers = _reverse_imports(crossfile._package_parent(os.path.dirname(target))).get(target, {})
        found = []
        for importer, spellings in sorted(importers.items()):
            # `from train import test` counts only if `test` is one of the functions, and
            # `import train` only if one of them is called (`train.test(`).
            data = crossfile.read_neighbour_bytes(importer) or b""
            wanted = tuple(sorted({spelling for spelling, name in spellings
                                   if name in defined or (name is None and _importer_calls_any(data, defined))}))
            if wanted and importer != target:
                imported = crossfile._imported(importer, data)
                found.append((*crossfile._stamp(importer), wanted, imported))
        return (os.path.dirname(target), tuple(found)) if found else ()
    except (OSError, ValueError, RecursionError):  # odd paths or names: check the file on its own
        return ()


def _evaluating_functions(text: str) -> frozenset[str]:
    """Module-level functions with parameters whose text (up to the next one) evaluates, or
    calls one that does (``test`` calling ``test_epoch``: callers of either matter)."""
    starts = list(DEFINES_FUNCTION.finditer(text))
    ends = [match.start() for match in starts[1:]] + [len(text)]
    blocks = {match.group(1): text[match.end():end] for match, end in zip(starts, ends)}
    found = {name for name, block in blocks.items() if name.startswith(PREDICTION_PREFIXES) or EVALUATES.search(block)}
    if not found:
        return frozenset()
    for _ in range(MAX_CALL_DEPTH):
        more = {name for name, block in blocks.items() if name not in found and _calls_any(block, found)}
        if not more:
            break
        found |= more
    return frozenset(found)


def _calls_any(text: str, names) -> bool:
    """Does ``text`` call one of ``names`` (``test(``, ``train.test(``)?"""
    return any(next(crossfile.calls(text, name, after_dot=True), None) is not None for name in names)


def _importer_calls_any(data: bytes, names: frozenset[str]) -> bool:
    return text_memo.remembered(data, "calls:" + ",".join(sorted(names)), lambda: _calls_any(data.decode("utf-8", "replace"), names))


def facts(dependencies: Dependencies) -> CallerFacts:
    """Every call of the checked file's functions in its callers, with the modes the arguments
    may be in there. Parses the callers (in the worker)."""
    found: dict[str, list[ExternalCall]] = {}
    directory, importers = dependencies or ("", ())
    for path, mtime_ns, size, modules, imported in importers:
        for name, call in _calls_in(path, mtime_ns, size, modules, imported):
            found.setdefault(name, []).append(call._replace(path=os.path.relpath(path, directory)))
    return {name: tuple(calls) for name, calls in found.items()}


def forget() -> None:
    _reverse_imports.cache_clear()


@lru_cache(maxsize=16)
def _reverse_imports(root: str) -> dict[str, dict[str, set]]:
    """{module file: {importing file: {(the module as it spells it, name imported from it or
    None), ...}}} over the project's Python files: one pass of regexes and ``stat`` per run."""
    found: dict[str, dict[str, set]] = {}
    for importer in _project_files(root):
        for target, spelling, name in _file_imports(*crossfile._stamp(importer)):
            found.setdefault(target, {}).setdefault(importer, set()).add((spelling, name))
    return found


@lru_cache(maxsize=8192)
def _file_imports(path: str, mtime_ns: int, size: int) -> tuple:
    """One file's local imports, kept across runs while the file is unchanged (an editor checks
    the same project again at every change: only the walk and a ``stat`` per file are redone)."""
    return tuple(_imports(crossfile.read_neighbour_bytes(path) or b"", os.path.dirname(path)))


def _imports(data: bytes, here: str):
    """(module file, spelling, name) for each local import: ``from train import test`` gives
    (train.py, "train", "test"); ``import val`` and ``from . import train`` give the module as
    spelled, with no name."""
    statements = crossfile.import_statements(data)
    for dots, module, names in statements:
        if dots is None or (not dots and not crossfile._is_local(module.split(".")[0], here)):
            continue
        source = crossfile._find(here, len(dots), module) if module else None
        for name, _alias in names:
            submodule = crossfile._find(here, len(dots), f"{module}.{name}" if module else name)
            if submodule is not None:  # `from . import train`, `from pkg import train`
                yield os.path.abspath(submodule), f"{dots}{module}.{name}" if module else dots + name, None
            elif source is not None:
                yield os.path.abspath(source), dots + module, name
    for dots, module, _alias in statements:
        if dots is None:
            source = crossfile._find(here, 0, module) if crossfile._is_local(module.split(".")[0], here) else None
            if source is not None:
                yield os.path.abspath(source), module, None


def _project_files(root: str) -> tuple[str, ...]:
    files: list[str] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".") and d not in SKIPPED_DIRECTORIES)
        files.extend(os.path.join(directory, name) for name in sorted(names) if name.endswith(".py"))
        if len(files) > MAX_PROJECT_FILES:
            return ()  # not a project but a whole disk: look no further than the file
    return tuple(files)


def _text(path: str) -> str:
    return crossfile.read_neighbour(path, errors="replace") or ""


def _calls_in(path: str, mtime_ns: int, size: int, modules: tuple[str, ...], imported: tuple) -> tuple[tuple[str, ExternalCall], ...]:
    parsed = _parsed_caller(path, mtime_ns, size, imported)
    if parsed is None:
        return ()
    semantic, flow, lines = parsed
    found = []
    for function in semantic.functions:
        for site in function.calls:
            name = _called_function(site.callee, modules)
            if name is not None:
                found.append((name, _external_call(path, lines.get(id(site.node), 0), semantic, flow, site)))
    return tuple(found)


@lru_cache(maxsize=64)
def _parsed_caller(path: str, mtime_ns: int, size: int, imported: tuple):
    """A caller parsed once for every file it calls into: its semantic model and flow, and the
    line of each call (from CPython's parser, much cheaper than libcst's position metadata)."""
    import libcst as cst

    from loopdoctor.static.flow import Flow
    from loopdoctor.static.model import SemanticModel

    text = _text(path)
    try:
        module = cst.parse_module(text)
        # What the caller's own local imports say (this file's functions that set a mode among
        # them); not who calls the caller: one file away, no further.
        semantic = SemanticModel(module, crossfile.facts((imported, ())))
        lines = _call_lines(semantic, ast.parse(text))
    except Exception:  # a broken caller is reported when it is checked itself, not here
        return None
    return semantic, Flow(semantic), lines


def _call_lines(semantic, tree: ast.Module) -> dict[int, int]:
    """id(libcst call) -> its line: the calls of one spelling (``train.test``) are paired in
    source order with CPython's, which carry lines; a spelling whose counts differ gets none."""
    from loopdoctor.static.model import dotted

    by_spelling: dict[str, list[int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            spelled = _ast_dotted(node.func)
            if spelled:
                by_spelling.setdefault(spelled, []).append((node.lineno, node.col_offset))
    sites: dict[str, list] = {}
    for function in semantic.functions:
        for site in function.calls:
            spelled = dotted(site.node.func)
            if spelled:
                sites.setdefault(spelled, []).append(site)
    lines = {}
    for spelled, found in sites.items():
        positions = sorted(by_spelling.get(spelled, ()))
        if len(positions) == len(found):
            for site, (line, _) in zip(sorted(found, key=lambda s: s.order), positions):
                lines[id(site.node)] = line
    return lines


def _ast_dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _ast_dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _called_function(callee: Optional[str], modules: tuple[str, ...]) -> Optional[str]:
    """``train.test`` with ``train`` one of the module's spellings -> "test"."""
    if callee is None:
        return None
    module, _, name = callee.rpartition(".")
    return name if module in modules and name.isidentifier() else None


def _external_call(path: str, line: int, semantic, flow, site) -> ExternalCall:
    from loopdoctor.static.model import dotted

    def modes(value) -> Optional[frozenset]:
        key = dotted(value)
        return flow.mode_before(site, key) if key else None

    positional = tuple(modes(arg.value) for arg in site.node.args if arg.keyword is None and not arg.star)
    keywords = tuple((arg.keyword.value, modes(arg.value)) for arg in site.node.args if arg.keyword is not None)
    return ExternalCall(path, line, positional, keywords, any(arg.star for arg in site.node.args))
