"""What the loop checks report: one finding per mistake and call site, in the user's own code.

A finding names the user's frame that made the call (the first frame outside torch, loopdoctor
and the standard library), the optimizer step it happened at, and a message and help as the
static rule with the same code gives them. LD200 (the first non-finite value) is a `Diagnosis`
that carries the same fields; ``finding_dict`` writes either kind for ``--json-out``.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch

from loopdoctor.static.rules import page_url

# Frames in these directories are never "the user's": torch, loopdoctor's runtime and command
# line (not its demo trainer, which is training code like any other), the standard library.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_DIRECTORIES = tuple(
    os.path.join(os.path.abspath(path), "")
    for path in (os.path.dirname(torch.__file__), os.path.join(_PACKAGE, "runtime"), os.path.join(_PACKAGE, "cli"),
                 os.path.dirname(os.__file__), sysconfig.get_paths().get("stdlib") or os.path.dirname(os.__file__))
)


@dataclass(frozen=True)
class Site:
    filename: str
    line: int

    @property
    def source(self) -> str:
        return linecache.getline(self.filename, self.line).rstrip("\n")

    def __str__(self) -> str:
        return f"{_relative(self.filename)}:{self.line}"


UNKNOWN_SITE = Site("<unknown>", 0)


def user_site(skip: int = 1) -> Site:
    """The innermost frame of the caller's stack that is not torch's, loopdoctor's or the
    standard library's: the line in the user's code that made the call being observed."""
    frame = sys._getframe(skip)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<") and not _is_library(filename):
            return Site(filename, frame.f_lineno)
        if filename.startswith("<") and not filename.startswith("<frozen"):
            return Site(filename, frame.f_lineno)  # exec'd code, a notebook cell: the user's
        frame = frame.f_back
    return UNKNOWN_SITE


_library_cache: dict[str, bool] = {}


def _is_library(filename: str) -> bool:
    known = _library_cache.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = _library_cache[filename] = path.startswith(LIBRARY_DIRECTORIES)
    return known


def _relative(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


@dataclass
class LoopFinding:
    code: str
    name: str
    message: str
    filename: str
    line: int
    step: int
    help: str = ""
    rank: Optional[int] = None
    related: list[str] = field(default_factory=list)  # other places involved, as "file:line what"

    @property
    def headline(self) -> str:
        rank = f", rank {self.rank}" if self.rank is not None else ""
        return f"{self.code} [{self.name}] {self.message} (step {self.step}{rank})"

    @property
    def place(self) -> str:
        return f"{_relative(self.filename)}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": page_url(self.code)}

    def lines(self) -> list[str]:
        out = [f"{self.place}: {self.headline}"]
        source = linecache.getline(self.filename, self.line).rstrip("\n")
        if source.strip():
            out.append(f"    {self.line} | {source.strip()}")
        out += [f"    {place}" for place in self.related]
        if self.help:
            out.append(f"    = help: {self.help}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __rich__(self):
        text = finding_text(self.place, self.code, self.name, f"{self.message} ")
        text.append(f"(step {self.step}" + (f", rank {self.rank})" if self.rank is not None else ")"), style="dim")
        for line in self.lines()[1:]:
            text.append("\n" + line, style="cyan" if "= help" in line else "")
        return text


def finding_text(place: str, code: str, name: str, message: str):
    """``place: CODE [name] message``, styled: the first line of every run-time finding (LD200's too)."""
    from rich.text import Text

    text = Text()
    text.append(place, style="bold")
    text.append(": ")
    text.append(code, style="bold red")
    text.append(f" [{name}] {message}")
    return text


def finding_dict(finding: Any) -> dict[str, Any]:
    """One entry of ``--json-out``'s ``findings``: LD200 keeps its whole diagnosis under it."""
    if isinstance(finding, LoopFinding):
        return finding.to_dict()
    return {
        "code": finding.code, "name": finding.name, "message": finding.headline, "filename": finding.filename,
        "line": finding.line, "step": finding.step, "rank": finding.rank, "url": page_url(finding.code),
        "diagnosis": finding.to_dict(),
    }
