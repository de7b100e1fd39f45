"""Findings are plain data; every output format renders the same list."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from loopdoctor.static.rules import page_url


@dataclass(frozen=True, order=True)
class Position:
    row: int  # 1-based
    column: int  # 1-based

    def to_dict(self) -> dict[str, int]:
        return {"row": self.row, "column": self.column}


@dataclass(frozen=True)
class Edit:
    start: Position
    end: Position
    content: str
    cell: Optional[int] = None  # notebooks: the code cell whose rows the positions count

    def to_dict(self) -> dict[str, Any]:
        data = {"content": self.content, "location": self.start.to_dict(), "end_location": self.end.to_dict()}
        if self.cell is not None:
            data["cell"] = self.cell
        return data


class Applicability(str, Enum):
    """How far a fix can be trusted, as ruff grades them. A ``str`` enum: JSON and the cache keep
    the plain words."""

    SAFE = "safe"  # keeps what the code means: `--fix` applies it
    UNSAFE = "unsafe"  # may change what the code computes: only with `--unsafe-fixes`
    DISPLAY_ONLY = "display-only"  # a suggestion to read, never applied

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Fix:
    """A fix as text edits: plain data, so that a cached result needs no libcst (fixes.py makes them)."""

    applicability: Applicability
    message: str
    edits: tuple[Edit, ...]
    group: Optional[str] = None  # fixes of one group must not be applied together in a pass

    def applies(self, unsafe: bool) -> bool:
        """Does ``--fix`` apply it (with ``--unsafe-fixes`` when ``unsafe``)?"""
        return self.applicability == Applicability.SAFE or (unsafe and self.applicability == Applicability.UNSAFE)

    def to_dict(self) -> dict[str, Any]:
        return {"applicability": self.applicability.value, "message": self.message, "edits": [e.to_dict() for e in self.edits]}


@dataclass(frozen=True)
class Finding:
    filename: str
    location: Position
    end_location: Position
    code: str
    name: str
    message: str
    fix_hint: Optional[str] = None
    cell: Optional[int] = None  # notebooks: the code cell (from 1); rows are then lines in that cell
    fix: Optional[Fix] = None  # when the rule knows a fix

    @property
    def sort_key(self) -> tuple:
        return (self.filename, self.cell or 0, self.location, self.code)

    @property
    def place(self) -> str:
        """``path:row:col``, or ``path:cell N:row:col`` in a notebook."""
        cell = f"cell {self.cell}:" if self.cell is not None else ""
        return f"{self.filename}:{cell}{self.location.row}:{self.location.column}"

    def to_dict(self) -> dict[str, Any]:
        data = {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "filename": self.filename,
            "location": self.location.to_dict(),
            "end_location": self.end_location.to_dict(),
            "fix": self.fix.to_dict() if self.fix is not None else None,
            "url": page_url(self.code),
        }
        if self.cell is not None:
            data["cell"] = self.cell
        return data


@dataclass
class FileResult:
    filename: str
    findings: list[Finding] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # source lines, kept only when there are findings
    parsed: bool = False
    error: Optional[str] = None  # a problem that is not a finding (corrupt notebook, internal error)
    cell_lines: dict[int, list[str]] = field(default_factory=dict)  # notebooks: lines of each cell
    codes: tuple = ()  # the rules this file was checked with
    notice: Optional[str] = None  # worth a warning, but neither a finding nor an error