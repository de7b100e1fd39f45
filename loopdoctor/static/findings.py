"""Findings are plain data; every output format renders the same list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True, order=True)
class Position:
    row: int  # 1-based
    column: int  # 1-based

    def to_dict(self) -> dict[str, int]:
        return {"row": self.row, "column": self.column}


@dataclass(frozen=True)
class Finding:
    filename: str
    location: Position
    end_location: Position
    code: str
    name: str
    message: str
    fix_hint: Optional[str] = None

    @property
    def sort_key(self) -> tuple:
        return (self.filename, self.location, self.code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "filename": self.filename,
            "location": self.location.to_dict(),
            "end_location": self.end_location.to_dict(),
            "fix": None,
        }
