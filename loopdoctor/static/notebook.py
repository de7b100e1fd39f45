"""Jupyter notebooks: the code cells become one module (a loop in cell 5 uses the model of cell
2), with IPython magics and shell lines blanked, and findings are mapped back to cell and line."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field, replace
from json.decoder import scanstring
from typing import Optional

from loopdoctor.static.findings import Edit, Finding, Fix, Position

# Cell magics whose body is not Python: the whole cell is skipped.
FOREIGN_CELL_MAGICS = {"bash", "sh", "script", "html", "javascript", "js", "latex", "markdown", "perl", "ruby", "svg", "writefile", "sql"}
MAGIC_LINE = re.compile(r"^\s*(%|!|\?)|^\s*[\w.]+\?\??\s*$")
SHELL_ASSIGNMENT = re.compile(r"^(\s*[\w.,\s]+=\s*)[!%]")


class NotebookError(Exception):
    pass


@dataclass
class Notebook:
    source: str
    origins: list[tuple[int, int]]  # for each line of ``source``: (cell number from 1, line in cell)
    cell_lines: dict[int, list[str]]
    cell_texts: dict[int, str] = field(default_factory=dict)  # each code cell's source as written
    blanked: frozenset[int] = frozenset()  # rows of ``source`` that replace a magic or shell line

    def locate(self, row: int) -> tuple[int, int]:
        return self.origins[row - 1] if 0 < row <= len(self.origins) else (0, row)

    def locate_finding(self, finding: Finding) -> Finding:
        """The finding in cell coordinates; its fix too, or no fix when an edit crosses cells
        or touches a blanked magic line."""
        cell, row = self.locate(finding.location.row)
        end_cell, end_row = self.locate(finding.end_location.row)
        end = Position(end_row, finding.end_location.column) if end_cell == cell else Position(row, finding.location.column)
        fix = self._locate_fix(finding.fix) if finding.fix is not None else None
        return replace(finding, location=Position(row, finding.location.column), end_location=end, cell=cell, fix=fix)

    def _locate_fix(self, fix: Fix) -> Optional[Fix]:
        edits = []
        for edit in fix.edits:
            located = self._locate_edit(edit)
            if located is None:
                return None
            edits.append(located)
        return replace(fix, edits=tuple(edits))

    def _locate_edit(self, edit: Edit) -> Optional[Edit]:
        # An end at column 1 of a later row is the end of the row before it: that row's cell.
        line_end = edit.end.column == 1 and edit.end.row > edit.start.row
        last_row = edit.end.row - 1 if line_end else edit.end.row
        if edit.start.row > len(self.origins):  # an insertion after the last line
            if not self.origins:
                return None
            cell, row = self.origins[-1]
            start = end = Position(row + 1, 1)
            return Edit(start, end, edit.content, cell)
        touched = range(edit.start.row, last_row + 1)
        if any(r in self.blanked for r in touched) or last_row > len(self.origins):
            return None
        cell, start_row = self.origins[edit.start.row - 1]
        end_cell, end_row = self.origins[last_row - 1]
        if end_cell != cell:
            return None
        end = Position(end_row + 1, 1) if line_end else Position(end_row, edit.end.column)
        return Edit(Position(start_row, edit.start.column), end, edit.content, cell)


def read_notebook(data: bytes) -> Notebook:
    try:
        document = json.loads(data)
        cells = document["cells"]
        if not isinstance(cells, list):
            raise TypeError("'cells' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise NotebookError(f"not a valid notebook: {error}") from error
    lines: list[str] = []
    origins: list[tuple[int, int]] = []
    cell_lines: dict[int, list[str]] = {}
    cell_texts: dict[int, str] = {}
    blanked: set[int] = set()
    for code_cell, cell in enumerate(_code_cells(cells), start=1):
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        raw = text.splitlines()
        cell_lines[code_cell], cell_texts[code_cell] = raw, text
        for number, (line, python) in enumerate(zip(raw, _python_lines(raw)), start=1):
            lines.append(python)
            origins.append((code_cell, number))
            if python != line:
                blanked.add(len(lines))
    return Notebook("\n".join(lines) + "\n", origins, cell_lines, cell_texts, frozenset(blanked))


def isolate_broken_cells(notebook: Notebook) -> tuple[Notebook, list[tuple[int, int, int, str]]]:
    """For cells that do not parse as one module: the cells that do not parse alone (Jupyter
    parses each cell on its own), blanked so that the others are still checked, and
    ``(cell, row, column, message)`` for each."""
    rows_of: dict[int, list[int]] = {}
    for index, (cell, _) in enumerate(notebook.origins):
        rows_of.setdefault(cell, []).append(index)
    lines = notebook.source.split("\n")
    broken, blanked = [], set(notebook.blanked)
    for cell, rows in rows_of.items():
        try:
            compile("\n".join(lines[i] for i in rows) + "\n", f"<cell {cell}>", "exec", dont_inherit=True, flags=ast.PyCF_ONLY_AST)
            continue
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            message = error.msg if isinstance(error, SyntaxError) else str(error)
            broken.append((cell, getattr(error, "lineno", None) or 1, getattr(error, "offset", None) or 1, message))
        for i in rows:
            lines[i] = ""
            blanked.add(i + 1)
    return replace(notebook, source="\n".join(lines), blanked=frozenset(blanked)), broken


def _code_cells(cells: list) -> list[dict]:
    return [cell for cell in cells if isinstance(cell, dict) and cell.get("cell_type") == "code"]


# ---- writing cells back ---------------------------------------------------------------------
# A fixed notebook changes only the ``source`` of the cells that were fixed: everything else
# (outputs, metadata, key order, indentation, escapes) is kept byte for byte. The JSON text is
# scanned for the spans of those values rather than re-serialised.

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_PRIMITIVE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


def rewrite_cells(data: bytes, sources: dict[int, str]) -> bytes:
    """The notebook with these code cells' sources (by code-cell number, from 1) replaced."""
    text = data.decode("utf-8")
    ascii_only = not any(ord(c) > 127 for c in text)
    spans = []
    for number, (start, end) in _source_spans(text).items():
        if number in sources:
            spans.append((start, end, _encode_source(text, start, end, sources[number], ascii_only)))
    for start, end, encoded in sorted(spans, reverse=True):
        text = text[:start] + encoded + text[end:]
    return text.encode("utf-8")


def _encode_source(text: str, start: int, end: int, source: str, ascii_only: bool) -> str:
    if text[start] == '"':
        return json.dumps(source, ensure_ascii=ascii_only)
    items = [json.dumps(line, ensure_ascii=ascii_only) for line in source.splitlines(keepends=True)]
    original = text[start:end]
    if "\n" not in original or not items:
        return "[" + ", ".join(items) + "]"
    item_indent = re.match(r"\[\r?\n([ \t]*)", original)
    close_indent = re.search(r"\n([ \t]*)\]$", original)
    newline = "\r\n" if "\r\n" in original else "\n"
    indent = item_indent.group(1) if item_indent else " "
    closing = close_indent.group(1) if close_indent else ""
    return "[" + newline + ("," + newline).join(indent + item for item in items) + newline + closing + "]"


def _source_spans(text: str) -> dict[int, tuple[int, int]]:
    """Code-cell number -> (start, end) of its ``source`` value in the JSON text."""
    spans: dict[int, tuple[int, int]] = {}
    cells = _member(text, _skip(text, 0), "cells")
    if cells is None or text[cells] != "[":
        return spans
    number = 0
    for start, _ in _elements(text, cells):
        if text[start] != "{":
            continue
        members = dict((key, (value, end)) for key, value, end in _members(text, start))
        kind = members.get("cell_type")
        if kind is None or json.loads(text[kind[0]:kind[1]]) != "code":
            continue
        number += 1
        if "source" in members:
            spans[number] = members["source"]
    return spans


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()


def _value_end(text: str, index: int) -> int:
    char = text[index]
    if char == '"':
        return scanstring(text, index + 1)[1]
    if char == "{":
        ends = [end for _, _, end in _members(text, index)]
        return _skip(text, ends[-1] if ends else index + 1) + 1
    if char == "[":
        ends = [end for _, end in _elements(text, index)]
        return _skip(text, ends[-1] if ends else index + 1) + 1
    match = _PRIMITIVE.match(text, index)
    if match is None:
        raise ValueError(f"unexpected JSON at offset {index}")
    return match.end()


def _members(text: str, index: int):
    """(key, value start, value end) of the object that starts at ``index``."""
    index = _skip(text, index + 1)
    while text[index] != "}":
        key, index = scanstring(text, index + 1)
        index = _skip(text, _skip(text, index) + 1)  # past the colon
        end = _value_end(text, index)
        yield key, index, end
        index = _skip(text, end)
        if text[index] == ",":
            index = _skip(text, index + 1)


def _elements(text: str, index: int):
    """(start, end) of each element of the array that starts at ``index``."""
    index = _skip(text, index + 1)
    while text[index] != "]":
        end = _value_end(text, index)
        yield index, end
        index = _skip(text, end)
        if text[index] == ",":
            index = _skip(text, index + 1)


def _member(text: str, index: int, wanted: str) -> Optional[int]:
    if text[index] != "{":
        return None
    for key, start, _ in _members(text, index):
        if key == wanted:
            return start
    return None


def _python_lines(raw: list[str]) -> list[str]:
    """The cell's lines with magics and shell escapes replaced by ``pass`` at their indentation."""
    if raw and raw[0].startswith("%%"):
        magic = raw[0][2:].split(maxsplit=1)[0] if raw[0][2:].strip() else ""
        if magic in FOREIGN_CELL_MAGICS:
            return ["" for _ in raw]
        raw = ["", *raw[1:]]
    out = []
    scan = _Continuation()
    shell_continues = False  # a magic or shell line that ends in a backslash goes on
    for line in raw:
        if shell_continues:
            out.append("")
            shell_continues = line.rstrip().endswith("\\")
            continue
        assignment = None if scan.continuing else SHELL_ASSIGNMENT.match(line)
        if assignment:  # files = !ls  ->  files = None
            out.append(assignment.group(1) + "None")
            shell_continues = line.rstrip().endswith("\\")
        elif not scan.continuing and MAGIC_LINE.match(line):  # (`% b` inside brackets is modulo)
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass")
            shell_continues = line.rstrip().endswith("\\")
        else:
            out.append(line)
            scan.feed(line)
    return out


class _Continuation:
    """Does the Python read so far go on into the next line (an open bracket or string, a
    trailing backslash)? A magic can only start a logical line."""

    def __init__(self) -> None:
        self.depth = 0
        self.string: Optional[str] = None  # the open triple-quote delimiter
        self.backslash = False

    @property
    def continuing(self) -> bool:
        return self.depth > 0 or self.string is not None or self.backslash

    def feed(self, line: str) -> None:
        index, quote = 0, None
        while index < len(line):
            char = line[index]
            if self.string is not None:
                if line.startswith(self.string, index):
                    index, self.string = index + 3, None
                    continue
            elif quote is not None:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = None
            elif char == "#":
                break
            elif line.startswith(('"""', "'''"), index):
                self.string, index = line[index:index + 3], index + 3
                continue
            elif char in "\"'":
                quote = char
            elif char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(self.depth - 1, 0)
            index += 1
        self.backslash = self.string is None and line.rstrip().endswith("\\") and "#" not in line
