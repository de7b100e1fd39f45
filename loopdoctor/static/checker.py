"""Check one file: read, prefilter by tokens, parse, build the model, run the rules."""

from __future__ import annotations

import ast
import sys
import warnings
from contextlib import contextmanager
from dataclasses import replace
from typing import Optional, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from loopdoctor.static.crossfile import Facts, facts_tokens
from loopdoctor.static.findings import FileResult, Finding, Position
from loopdoctor.static.flow import Flow
from loopdoctor.static import fixes, suppression
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.notebook import NotebookError, read_notebook
from loopdoctor.static.rules import RuleInfo
from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.source import decode, failure
from loopdoctor.static.suppression import UNUSED_NOQA_CODE


def check_bytes(data: bytes, filename: str, rules: Sequence[type[Rule]], external: Optional[Facts] = None) -> FileResult:
    """``external``: what the file's local imports define (crossfile.py)."""
    if filename.endswith(".ipynb"):
        return check_notebook(data, filename, rules)
    return check_source(data, filename, rules, external)


def check_notebook(data: bytes, filename: str, rules: Sequence[type[Rule]]) -> FileResult:
    """Check a notebook's code cells as one module and map findings back to cell and line."""
    try:
        notebook = read_notebook(data)
    except NotebookError as error:
        return FileResult(filename, error=str(error))
    result = check_source(notebook.source.encode(), filename, rules)
    located = []
    for finding in result.findings:
        cell, row = notebook.locate(finding.location.row)
        end_cell, end_row = notebook.locate(finding.end_location.row)
        end = Position(end_row, finding.end_location.column) if end_cell == cell else Position(row, finding.location.column)
        located.append(replace(finding, location=Position(row, finding.location.column), end_location=end, cell=cell))
    result.findings = located
    result.cell_lines = notebook.cell_lines
    return result


def check_source(data: bytes, filename: str, rules: Sequence[type[Rule]], external: Optional[Facts] = None) -> FileResult:
    text_or_failure = decode(data, filename)
    if isinstance(text_or_failure, FileResult):
        return text_or_failure
    return check_text(text_or_failure, filename, rules, external)


def check_text(text: str, filename: str, rules: Sequence, external: Optional[Facts] = None) -> FileResult:
    """Check decoded source: the rules, then ``# noqa`` suppression."""
    result = _check_text(text, filename, rules, external or {})
    report_unused = any(rule.code == UNUSED_NOQA_CODE for rule in rules)
    if result.findings or report_unused:
        lines = text.splitlines()
        result.findings = sorted(suppression.apply(result.findings, lines, report_unused, filename), key=lambda f: f.sort_key)
        result.lines = lines if result.findings else []
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


def _check_text(text: str, filename: str, rules: Sequence, external: Facts) -> FileResult:
    with _deep_recursion():
        return _check_text_deep(text, filename, rules, external)


def _check_text_deep(text: str, filename: str, rules: Sequence, external: Facts) -> FileResult:
    implementations = [rule.load() if isinstance(rule, RuleInfo) else rule for rule in rules]
    tokens = text + "\n" + facts_tokens(external) if external else text
    wanted = [rule for rule in implementations if rule.wants(tokens)]
    if not wanted:
        # No rule can fire; still say so when the file is not valid Python. CPython's own
        # parser costs a seventh of libcst's.
        return _syntax_check_only(text, filename)
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        checked = _syntax_check_only(text, filename)
        if checked.findings:  # CPython rejects it too: a real syntax error
            return checked
        # Valid Python that libcst's grammar does not cover: say so, but it is no finding.
        return FileResult(filename, notice=f"not analysed: libcst cannot parse line {error.raw_line} of this valid Python")
    except RecursionError:
        return failure(filename, 1, 1, "expressions nested too deeply to parse")
    result = FileResult(filename, parsed=True)
    try:
        violations = _run_rules(module, wanted, external)
    except RecursionError:
        result.error = "internal error, file skipped: code nested too deeply to analyse"
        return result
    except Exception as error:  # a bug in loopdoctor must not stop the other files
        result.error = f"internal error, file skipped: {type(error).__name__}: {error}"
        return result
    if violations:
        result.findings = _locate(module, violations, filename, text)
    return result


def _run_rules(module: cst.Module, rules: Sequence[type[Rule]], external: Facts) -> list[tuple[type[Rule], Violation]]:
    model = SemanticModel(module, external)
    if model.uses_other_framework:
        return []
    flow = Flow(model)
    found = []
    for rule in rules:
        for violation in rule().check(model, flow):
            found.append((rule, violation))
    return found


def _locate(module: cst.Module, violations, filename: str, text: str) -> list[Finding]:
    # No deep copy: the rules hold nodes of this very tree.
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
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


def _syntax_check_only(text: str, filename: str) -> FileResult:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like are not ours to report
            compile(text, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as error:
        return failure(filename, error.lineno or 1, error.offset or 1, f"syntax error: {error.msg}")
    except (ValueError, RecursionError, MemoryError) as error:
        return failure(filename, 1, 1, f"cannot parse: {error}")
    return FileResult(filename)
