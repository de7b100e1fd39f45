"""Check one file: read, prefilter by tokens, parse, build the model, run the rules."""

from __future__ import annotations

import ast
import sys
import warnings
from contextlib import contextmanager
from typing import Optional, Sequence

import libcst as cst

from loopdoctor.config import AnalysisSettings
from loopdoctor.static.crossfile import NO_FACTS, ProjectFacts, facts_tokens
from loopdoctor.static.findings import FileResult, Finding, Position
from loopdoctor.static.flow import Flow
from loopdoctor.static import fixes
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.notebook import NotebookError, isolate_broken_cells, read_notebook
from loopdoctor.static.positions import positions_of
from loopdoctor.static.rules import PARSE_ERROR_CODE, PARSE_ERROR_NAME, RuleInfo
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.source import decode, failure
from loopdoctor.static import roles


def check_bytes(
    data: bytes, filename: str, rules: Sequence[type[Rule]], external: Optional[ProjectFacts] = None,
    settings: AnalysisSettings = AnalysisSettings(),
) -> FileResult:
    """The rules' raw findings, before ``# noqa`` (suppression.py) and selection: what the cache
    keeps. ``external``: what the project's other files say (crossfile.py)."""
    if filename.endswith(".ipynb"):
        return check_notebook(data, filename, rules, settings)
    text_or_failure = decode(data, filename)
    if isinstance(text_or_failure, FileResult):
        return text_or_failure
    return check_text(text_or_failure, filename, rules, external, settings)


def check_notebook(data: bytes, filename: str, rules: Sequence[type[Rule]], settings: AnalysisSettings = AnalysisSettings()) -> FileResult:
    """Check a notebook's code cells as one module and map findings back to cell and line."""
    try:
        notebook = read_notebook(data)
    except NotebookError as error:
        return FileResult(filename, error=str(error))
    broken: list = []
    result = check_text(notebook.source, filename, rules, None, settings)
    if any(f.code == PARSE_ERROR_CODE for f in result.findings):  # one bad cell must not hide the rest
        notebook, broken = isolate_broken_cells(notebook)
        result = check_text(notebook.source, filename, rules, None, settings)
    result.findings = [notebook.locate_finding(finding) for finding in result.findings]
    for cell, row, column, message in broken:
        position = Position(row, max(column, 1))
        result.findings.append(Finding(filename, position, position, PARSE_ERROR_CODE, PARSE_ERROR_NAME,
                                       f"syntax error: {message} (this cell is not checked; the others are)", cell=cell))
    result.findings.sort(key=lambda f: f.sort_key)
    return result


def check_text(text: str, filename: str, rules: Sequence, external: Optional[ProjectFacts] = None,
               settings: AnalysisSettings = AnalysisSettings()) -> FileResult:
    """Check decoded source: the rules' raw findings, sorted."""
    result = _check_text(text, filename, rules, external or NO_FACTS, settings)
    result.findings.sort(key=lambda f: f.sort_key)
    return result


@contextmanager
def _deep_recursion(limit: int = 20_000):
    """Long expression chains nest thousands deep; Python 3.11 frames do not use the C stack."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


def _check_text(text: str, filename: str, rules: Sequence, external: ProjectFacts, settings: AnalysisSettings) -> FileResult:
    # CPython's parser first: it is a seventh of libcst's cost, says LD000 for every broken file,
    # and rejects the expressions nested so deep that libcst's native parser overflows the C
    # stack (a segfault, not a RecursionError, found with an 8,000-term sum).
    tree = _cpython_parse(text, filename)
    if isinstance(tree, FileResult):
        return tree
    implementations = [rule.load() if isinstance(rule, RuleInfo) else rule for rule in rules]
    tokens = text + "\n" + facts_tokens(external.squashes) if external.squashes else text
    if any(f".{method}(" in text for method in settings.step_methods):
        tokens += "\n.step("  # the project's own step methods are steps to the prefilter too
    if any(name.rsplit(".", 1)[-1] in text for name in settings.grad_disabling):
        tokens += "\nno_grad"  # and its own grad-disabling functions turn gradients off
    wanted = [rule for rule in implementations if rule.wants(tokens)]
    if not wanted:
        return FileResult(filename)
    with _deep_recursion():
        return _parse_and_check(text, tree, filename, wanted, external, settings)


def _parse_and_check(text: str, tree: ast.Module, filename: str, rules: Sequence, external: ProjectFacts,
                     settings: AnalysisSettings) -> FileResult:
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        # Valid Python (CPython took it) that libcst's grammar does not cover: no finding.
        return FileResult(filename, notice=f"not analysed: libcst cannot parse line {error.raw_line} of this valid Python")
    except RecursionError:
        return FileResult(filename, notice="not analysed: expressions nested too deeply for libcst")
    result = FileResult(filename, parsed=True)
    try:
        violations = _run_rules(module, rules, external, settings)
    except RecursionError:
        result.error = "internal error, file skipped: code nested too deeply to analyse"
        return result
    except Exception as error:  # a bug in loopdoctor must not stop the other files
        result.error = f"internal error, file skipped: {type(error).__name__}: {error}"
        return result
    if violations:
        result.findings = _locate(module, tree, violations, filename, text)
    return result


def _run_rules(module: cst.Module, rules: Sequence[type[Rule]], external: ProjectFacts, settings: AnalysisSettings) -> list[tuple[type[Rule], Violation]]:
    model = SemanticModel(module, external, settings)
    if roles.uses_other_framework(model):
        return []
    flow = Flow(model)
    found = []
    for rule in rules:
        for violation in rule().check(model, flow):
            found.append((rule, violation))
    return found


def _locate(module: cst.Module, tree: ast.Module, violations, filename: str, text: str) -> list[Finding]:
    nodes = [violation.node for _, violation in violations]
    nodes += [node for _, violation in violations if violation.fix for node in fixes.nodes_of(violation.fix)]
    positions = positions_of(module, tree, nodes)
    lines = fixes.LINE_BREAK.split(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    findings = {}
    for rule, violation in violations:
        span = positions[violation.node]
        fix = fixes.resolve(violation.fix, positions, module, lines, newline) if violation.fix else None
        finding = Finding(
            filename,
            Position(span.start.line, span.start.column + 1),
            Position(span.end.line, span.end.column + 1),
            rule.code,
            rule.name,
            violation.message,
            rule.fix_hint,
            fix=fix,
        )
        findings.setdefault((finding.location, finding.code, finding.message), finding)
    return list(findings.values())


def _cpython_parse(text: str, filename: str):
    """CPython's syntax tree of ``text``, or the LD000 FileResult that says why there is none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like are not ours to report
            return compile(text, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as error:
        return failure(filename, error.lineno or 1, error.offset or 1, f"syntax error: {error.msg}")
    except (ValueError, RecursionError, MemoryError) as error:
        return failure(filename, 1, 1, f"cannot parse: {error}")
