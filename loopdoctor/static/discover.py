"""Turn the paths on the command line into the Python files to check."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SKIPPED_DIRECTORIES = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", "build", "dist", "node_modules", ".venv", "venv",
        ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".loopdoctor_cache",
        ".eggs", "site-packages",
    }
)


@dataclass
class Discovery:
    files: list[tuple[str, str]] = field(default_factory=list)  # (path on disk, display name)
    errors: list[str] = field(default_factory=list)


def discover(paths: list[str]) -> Discovery:
    found = Discovery()
    seen: set[str] = set()
    for given in paths:
        if os.path.isdir(given):
            for path, name in _walk(given):
                _add(found, seen, path, name)
        elif os.path.isfile(given):
            _add(found, seen, given, given)
        elif os.path.lexists(given):
            found.errors.append(f"{given}: not a regular file or directory")
        else:
            found.errors.append(f"{given}: no such file or directory")
    return found


def _add(found: Discovery, seen: set[str], path: str, name: str) -> None:
    real = os.path.realpath(path)
    if real not in seen:
        seen.add(real)
        found.files.append((path, name))


def _walk(root: str):
    for directory, subdirectories, files in os.walk(root, onerror=None):
        subdirectories[:] = sorted(
            d for d in subdirectories
            if d not in SKIPPED_DIRECTORIES and not d.endswith(".egg-info")
            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
        )
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                if os.path.isfile(path):
                    yield path, path
