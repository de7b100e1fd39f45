"""Fixes: what a rule proposes (in terms of nodes), the text edits it becomes, and applying them.

A rule attaches a ``FixPlan`` to a violation: node-level operations (replace a node, insert a
line before or after a statement, delete a statement's lines, wrap a statement in a ``with``,
add, replace or remove a call's keyword argument). Once positions are known the plan
becomes a ``Fix`` of plain text ``Edit``s, which is what JSON shows and what ``--fix`` applies.
Edits touch only their own span, so comments, quotes, blank lines and layout elsewhere stay
byte-for-byte the same.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import libcst as cst

from loopdoctor.static.findings import Applicability, Edit, Fix, Position

SAFE, UNSAFE, DISPLAY_ONLY = Applicability.SAFE, Applicability.UNSAFE, Applicability.DISPLAY_ONLY
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Replace:
    node: cst.CSTNode
    content: str


@dataclass(frozen=True)
class InsertLine:
    statement: cst.CSTNode
    content: str
    after: bool = False  # after the statement's last line instead of before its first


@dataclass(frozen=True)
class DeleteStatement:
    statement: cst.CSTNode


@dataclass(frozen=True)
class WrapInWith:
    """Put a compound statement under ``header`` (``with torch.no_grad():``), one level deeper."""

    statement: cst.CSTNode
    header: str


@dataclass(frozen=True)
class AddKeyword:
    """Pass ``name=value`` to ``call``, after its last argument."""

    call: cst.Call
    name: str
    value: str


@dataclass(frozen=True)
class ReplaceKeyword:
    """Give ``call``'s keyword argument ``name`` the value ``value``."""

    call: cst.Call
    name: str
    value: str


@dataclass(frozen=True)
class RemoveKeyword:
    """Drop ``call``'s keyword argument ``name`` with its comma."""

    call: cst.Call
    name: str


Operation = Union[Replace, InsertLine, DeleteStatement, WrapInWith, AddKeyword, ReplaceKeyword, RemoveKeyword]
KeywordOperation = (AddKeyword, ReplaceKeyword, RemoveKeyword)


@dataclass(frozen=True)
class FixPlan:
    applicability: Applicability
    message: str
    operations: Sequence[Operation] = field(default_factory=tuple)
    group: Optional[str] = None


def nodes_of(plan: FixPlan) -> list[cst.CSTNode]:
    """The nodes whose positions the plan's operations need."""
    return [_anchor(operation) for operation in plan.operations]


def _anchor(operation: Operation) -> cst.CSTNode:
    if isinstance(operation, KeywordOperation):
        return operation.call
    return operation.node if isinstance(operation, Replace) else operation.statement


def resolve(plan: FixPlan, positions, module: cst.Module, lines: list[str], newline: str) -> Optional[Fix]:
    """Turn node operations into text edits; None when a node has no position."""
    edits = []
    for operation in plan.operations:
        if positions.get(_anchor(operation)) is None:
            return None
        if isinstance(operation, Replace):
            span = positions[operation.node]
            edits.append(Edit(_pos(span.start), _pos(span.end), operation.content))
        elif isinstance(operation, KeywordOperation):
            edit = _keyword_edit(operation, positions, lines)
            if edit is None:
                return None
            edits.append(edit)
        elif isinstance(operation, InsertLine):
            span = positions[operation.statement]
            indent = _indent(lines[span.start.line - 1])
            row = _last_row(operation.statement, module, span.start.line) + 1 if operation.after else span.start.line
            if row > len(lines):  # after the last line of a file without a final newline
                end = Position(len(lines), len(lines[-1]) + 1)
                edits.append(Edit(end, end, newline + indent + operation.content))
            else:
                edits.append(Edit(Position(row, 1), Position(row, 1), indent + operation.content + newline))
        elif isinstance(operation, WrapInWith):
            wrapped = _wrap(operation, positions[operation.statement].start.line, module, lines, newline)
            if wrapped is None:
                return None
            edits.append(wrapped)
        else:
            span = positions[operation.statement]
            last = _last_row(operation.statement, module, span.start.line)
            edits.append(Edit(Position(span.start.line, 1), Position(last + 1, 1), ""))
    return Fix(plan.applicability, plan.message, tuple(sorted(edits, key=lambda e: (e.start, e.end))), plan.group)


def _keyword_edit(operation, positions, lines: list[str]) -> Optional[Edit]:
    """The text edit of a keyword operation; None when the call does not fit it (the keyword is
    missing, or ``name=value`` is to be added to a call that already passes it)."""
    args = list(operation.call.args)
    index = next((i for i, arg in enumerate(args) if arg.keyword is not None and arg.keyword.value == operation.name), None)
    if isinstance(operation, AddKeyword):
        if index is not None:
            return None
        text = f"{operation.name}={operation.value}"
        if args:
            end = _pos(positions[args[-1].value].end)
            return Edit(end, end, ", " + text)
        opening = _after_opening_parenthesis(positions[operation.call.func].end, lines)
        return Edit(opening, opening, text)
    if index is None:
        return None
    if isinstance(operation, ReplaceKeyword):
        span = positions[args[index].value]
        return Edit(_pos(span.start), _pos(span.end), operation.value)
    if index > 0:  # from the end of the argument before it: `f(a, name=1)` -> `f(a)`
        return Edit(_pos(positions[args[index - 1].value].end), _pos(positions[args[index].value].end), "")
    if len(args) > 1:  # the first of several: up to where the next one starts
        return Edit(_pos(positions[args[0]].start), _pos(positions[args[1]].start), "")
    return Edit(_pos(positions[args[0]].start), _pos(positions[args[0].value].end), "")


def _after_opening_parenthesis(callee_end, lines: list[str]) -> Position:
    row, line = callee_end.line, lines[callee_end.line - 1]
    return Position(row, line.index("(", callee_end.column) + 2)


def _wrap(operation: WrapInWith, first: int, module: cst.Module, lines: list[str], newline: str) -> Optional[Edit]:
    last = _last_row(operation.statement, module, first)
    keep = _rows_inside_strings(operation.statement, module, first)
    if keep is None:
        return None
    unit = module.default_indent
    body = [line if row in keep or not line.strip() else unit + line for row, line in enumerate(lines[first - 1 : last], first)]
    content = newline.join([_indent(lines[first - 1]) + operation.header, *body]) + newline
    return Edit(Position(first, 1), Position(last + 1, 1), content)


def _rows_inside_strings(statement: cst.CSTNode, module: cst.Module, first: int) -> Optional[set[int]]:
    """Rows that continue a multi-line string: indenting them would change the string. None when
    the statement cannot be tokenized alone, so that nothing is re-indented blindly."""
    if hasattr(statement, "leading_lines"):
        statement = statement.with_changes(leading_lines=())
    code = module.code_for_node(statement)
    rows: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.start[0] < token.end[0] and token.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
                rows.update(range(first + token.start[0], first + token.end[0]))
    except (tokenize.TokenError, SyntaxError):
        return None
    return rows


def spelling(imports: dict[str, str], module: cst.Module, qualified: str) -> tuple[str, tuple]:
    """How this file spells ``qualified`` (``copy.deepcopy``, ``torch.no_grad``) given its
    imports (local name -> qualified name), and the import to add when nothing reaches it."""
    package, _, name = qualified.rpartition(".")
    for local, target in imports.items():
        if target == qualified:
            return local, ()
    for local, target in imports.items():
        if target == package:
            return f"{local}.{name}", ()
    return qualified, (InsertLine(first_import_anchor(module), f"import {package}"),)


def first_import_anchor(module: cst.Module) -> cst.CSTNode:
    """The statement before which a new top-level import goes: the first import that is not
    ``from __future__``, else the first statement after the docstring and future imports."""
    for index, statement in enumerate(module.body):
        small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
        if isinstance(small, (cst.Import, cst.ImportFrom)) and not _is_future_import(small):
            return statement
    for index, statement in enumerate(module.body):
        small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
        is_docstring = index == 0 and isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString))
        if not is_docstring and not _is_future_import(small):
            return statement
    return module.body[-1]


def _is_future_import(small) -> bool:
    if not isinstance(small, cst.ImportFrom) or small.module is None:
        return False
    return isinstance(small.module, cst.Name) and small.module.value == "__future__"


def _pos(position) -> Position:
    return Position(position.line, position.column + 1)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))].replace("\f", "")


def _last_row(statement: cst.CSTNode, module: cst.Module, first_row: int) -> int:
    """The last source row of a statement (its position excludes the comment lines above it)."""
    if hasattr(statement, "leading_lines"):
        statement = statement.with_changes(leading_lines=())
    code = module.code_for_node(statement).rstrip("\r\n")
    return first_row + len(LINE_BREAK.findall(code))


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """Apply non-overlapping edits (1-based rows and columns, as findings give them)."""
    starts = [0]
    for match in LINE_BREAK.finditer(text):
        starts.append(match.end())

    def offset(position: Position) -> int:
        if position.row > len(starts):
            return len(text)
        return min(starts[position.row - 1] + position.column - 1, len(text))

    out = text
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        out = out[: offset(edit.start)] + edit.content + out[offset(edit.end):]
    return out


def overlaps(a: Fix, b: Fix) -> bool:
    return any(x.cell == y.cell and (x.start < y.end and y.start < x.end or x.start == y.start) for x in a.edits for y in b.edits)
