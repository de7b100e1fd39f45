"""A file's text: its encoding and BOM, and the LD000 finding when it has none. No libcst here,
so that a run answered by the cache never imports it."""

from __future__ import annotations

import io
import tokenize
from typing import Optional

from loopdoctor.static.findings import FileResult, Finding, Position
from loopdoctor.static.notebook import NotebookError, read_notebook
from loopdoctor.static.rules import PARSE_ERROR_CODE, PARSE_ERROR_NAME


def unreadable(filename: str, error: OSError) -> FileResult:
    return failure(filename, 1, 1, f"cannot read file: {error.strerror or error}")


def source_lines(filename: str, data: bytes) -> dict[Optional[int], list[str]]:
    """The lines that ``# noqa`` is read from and full output shows: a notebook's per code cell,
    a plain file's under None; nothing for a file that cannot be read as either."""
    if filename.endswith(".ipynb"):
        try:
            return dict(read_notebook(data).cell_lines)
        except NotebookError:
            return {}
    text = decode(data, filename)
    return {None: text.splitlines()} if isinstance(text, str) else {None: []}


def source_encoding(data: bytes) -> str:
    """The encoding to write a file back in (``utf-8-sig`` keeps a BOM)."""
    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:
        return "utf-8"


def decode(data: bytes, filename: str):
    """The text of a source file, or a FileResult with the LD000 that explains why not."""
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        return failure(filename, line, 1, "source contains NUL bytes")
    cookie_error = None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:  # a bad cookie, or undecodable bytes in the first two lines
        encoding, cookie_error = "utf-8", error
    try:
        text = data.decode(encoding)
        if cookie_error is not None:
            return failure(filename, getattr(cookie_error, "lineno", None) or 1, 1, f"bad encoding declaration: {cookie_error.msg}")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return failure(filename, line, 1, f"cannot decode as {encoding}: {error.reason}")
    except LookupError:
        return failure(filename, 1, 1, f"unknown encoding: {encoding}")
    return text[1:] if text.startswith("\ufeff") else text


def failure(filename: str, row: int, column: int, reason: str) -> FileResult:
    position = Position(max(row, 1), max(column, 1))
    finding = Finding(filename, position, position, PARSE_ERROR_CODE, PARSE_ERROR_NAME, reason)
    return FileResult(filename, [finding])
