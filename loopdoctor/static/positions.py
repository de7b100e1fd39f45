"""Line and column positions, computed only where something is reported.

libcst's PositionProvider renders the whole module to count positions, which costs twice the
parse on a 1,000-line file: too slow for an editor that re-lints on every change. Only the
top-level statements that hold a reported node (or a node a fix touches) are rendered here, each
as a module of its own, and their lines are shifted to where CPython's parser says each statement
starts. When the two parsers' statements do not line up one to one, the whole module is done.
"""

from __future__ import annotations

import ast
from typing import Iterable, Mapping

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, MetadataWrapper, PositionProvider

from loopdoctor.static.walk import walk


def positions_of(module: cst.Module, tree: ast.Module, nodes: Iterable[cst.CSTNode]) -> Mapping[cst.CSTNode, CodeRange]:
    """The span of every node in ``nodes`` (and of the rest of their statements)."""
    starts = _statement_starts(tree)
    if len(starts) != len(module.body):
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    wanted = {id(node) for node in nodes}
    found: dict[cst.CSTNode, CodeRange] = {}
    for statement, first_line in zip(module.body, starts):
        if not wanted or not any(id(node) in wanted for node in walk(statement)):
            continue
        # The module's own indentation and newlines (a tab counts one column), and no deep copy:
        # the rules hold nodes of this very tree.
        alone = module.with_changes(body=[statement], header=(), footer=())
        own = MetadataWrapper(alone, unsafe_skip_copy=True).resolve(PositionProvider)
        # Alone, the statement's first line (its first decorator's) follows its leading blank
        # and comment lines; CPython's tree says where that line really is.
        shift = first_line - (1 + len(statement.leading_lines))
        found.update((node, _shifted(span, shift)) for node, span in own.items())
        wanted -= {id(node) for node in own}
    if wanted:  # a node outside the statements (the module itself): count everything
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return found


def _statement_starts(tree: ast.Module) -> list[int]:
    """The first line of each top-level statement as libcst counts them: decorators included,
    statements joined by ``;`` counted once."""
    lines = []
    for statement in tree.body:
        decorators = getattr(statement, "decorator_list", [])
        line = min([statement.lineno] + [decorator.lineno for decorator in decorators])
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def _shifted(span: CodeRange, lines: int) -> CodeRange:
    if not lines:
        return span
    return CodeRange(CodePosition(span.start.line + lines, span.start.column), CodePosition(span.end.line + lines, span.end.column))
