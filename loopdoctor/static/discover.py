"""Turn the paths on the command line into the files to check, as ruff does: recurse into
directories for ``*.py`` and ``*.ipynb``, skip excluded and git-ignored paths. What is named
explicitly is checked even where git ignores it, and the excludes apply to it only with
``--force-exclude`` (as pre-commit names every staged file); a named file that is not Python
(``README.md``, ``pyproject.toml``) is skipped with a warning. A named path that exists but
cannot be read (a symlink loop) is passed on, to be reported as LD000."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from loopdoctor.config import Settings, SettingsFinder

SOURCE_SUFFIXES = (".py", ".ipynb")
EXPLICIT_SUFFIXES = (".py", ".pyi", ".pyw", ".ipynb")


@dataclass
class Discovery:
    files: list[tuple[str, str, Settings]] = field(default_factory=list)  # (path, display name, settings)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def discover(paths: list[str], finder: Optional[SettingsFinder] = None, respect_gitignore: bool = True,
             force_exclude: bool = False) -> Discovery:
    finder = finder or SettingsFinder()
    found = Discovery()
    seen: set[str] = set()
    for given in paths:
        if os.path.isdir(given):
            walked = list(_walk(given, finder))
            apply_gitignore = respect_gitignore and not _named_directory_ignored(given)
            ignored = _git_ignored([path for path, _ in walked], given) if apply_gitignore else set()
            for path, settings in walked:
                if path not in ignored:
                    _add(found, seen, path, path, settings)
        elif os.path.isfile(given):
            settings = finder.for_path(given)
            if force_exclude and settings.is_excluded(given):
                continue
            if not is_python_file(given):
                found.warnings.append(f"{given}: not a Python file or notebook, skipped")
                continue
            _add(found, seen, given, given, settings)
        elif os.path.islink(given):  # a loop or a dangling link: reading it says why
            found.files.append((given, given, finder.for_path(given)))
        elif os.path.lexists(given):
            found.errors.append(f"{given}: not a regular file or directory")
        else:
            found.errors.append(f"{given}: no such file or directory")
    return found


def is_python_file(path: str) -> bool:
    """A Python source or notebook by its suffix, or a script without one whose first line is a
    Python shebang."""
    if path.endswith(EXPLICIT_SUFFIXES):
        return True
    if os.path.splitext(path)[1]:
        return False
    try:
        with open(path, "rb") as handle:
            first = handle.readline(200)
    except OSError:
        return True  # let reading it report the problem
    return first.startswith(b"#!") and b"python" in first


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


def _named_directory_ignored(directory: str) -> bool:
    """Does git ignore this directory itself? Then everything in it was named on purpose."""
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    return parent != directory and bool(_git_ignored([directory], parent))


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
