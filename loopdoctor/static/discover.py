"""Turn the paths on the command line into the files to check, as ruff does: recurse into
directories for ``*.py`` and ``*.ipynb``, skip excluded and git-ignored paths, and check files
named explicitly whatever they are called."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from loopdoctor.config import Settings, SettingsFinder

SOURCE_SUFFIXES = (".py", ".ipynb")


@dataclass
class Discovery:
    files: list[tuple[str, str, Settings]] = field(default_factory=list)  # (path, display name, settings)
    errors: list[str] = field(default_factory=list)


def discover(paths: list[str], finder: Optional[SettingsFinder] = None, respect_gitignore: bool = True) -> Discovery:
    finder = finder or SettingsFinder()
    found = Discovery()
    seen: set[str] = set()
    for given in paths:
        if os.path.isdir(given):
            walked = list(_walk(given, finder))
            ignored = _git_ignored([path for path, _ in walked], given) if respect_gitignore else set()
            for path, settings in walked:
                if path not in ignored:
                    _add(found, seen, path, path, settings)
        elif os.path.isfile(given):
            _add(found, seen, given, given, finder.for_path(given))
        elif os.path.lexists(given):
            found.errors.append(f"{given}: not a regular file or directory")
        else:
            found.errors.append(f"{given}: no such file or directory")
    return found


def _add(found: Discovery, seen: set[str], path: str, name: str, settings: Settings) -> None:
    real = os.path.realpath(path)
    if real not in seen:
        seen.add(real)
        found.files.append((path, name, settings))


def _walk(root: str, finder: SettingsFinder):
    for directory, subdirectories, files in os.walk(root):
        settings = finder.for_path(directory)
        subdirectories[:] = sorted(
            d for d in subdirectories
            if not settings.is_excluded(os.path.join(directory, d))
            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
        )
        for file in sorted(files):
            path = os.path.join(directory, file)
            if file.endswith(SOURCE_SUFFIXES) and os.path.isfile(path) and not settings.is_excluded(path):
                yield path, settings


def _git_ignored(paths: list[str], root: str) -> set[str]:
    """The paths that git ignores (.gitignore, .git/info/exclude, global excludes); none outside a repository."""
    if not paths:
        return set()
    try:
        done = subprocess.run(
            ["git", "-C", root, "check-ignore", "--stdin", "-z"],
            input="\0".join(os.path.relpath(p, root) for p in paths) + "\0",
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode not in (0, 1):  # 128: not a git repository
        return set()
    return {os.path.join(root, p) for p in done.stdout.split("\0") if p}
