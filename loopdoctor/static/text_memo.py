"""What the cross-file search reads from a file's text alone, remembered across runs.

Before anything is parsed, ``crossfile`` and ``callers`` search the text of every file of a
project: its import statements, the functions that evaluate, the imported names it calls. Those
answers depend on the bytes alone, so they are kept by a digest of the bytes, in the cache
directory beside the results (``text-facts.json``): a warm run reads them instead of searching
every file again, and an edited file has new bytes, so it is searched again. The file holds
the fingerprint of loopdoctor's own sources: a changed search reads every file afresh. A run
without a cache keeps them for the run only.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Optional

FILE_NAME = "text-facts.json"
MAX_ENTRIES = 50_000  # files remembered; those not looked at in the latest run go first

_memo: dict[str, dict[str, Any]] = {}  # digest of the bytes -> {kind of fact: value}
_used: set[str] = set()  # digests looked up in this run
_changed = False
_cache: Optional[Any] = None  # the run's Cache, which writes the file


def remembered(data: bytes, kind: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, a JSON value (lists, not tuples), or what it gave before for these bytes."""
    global _changed
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    _used.add(digest)
    facts = _memo.setdefault(digest, {})
    if kind not in facts:
        facts[kind] = compute()
        _changed = True
    return facts[kind]


def load(cache: Any) -> None:
    """Start a run with what ``cache``'s directory remembers (nothing if it is unreadable, or
    written by other sources of loopdoctor)."""
    global _cache
    forget()
    _cache = cache
    try:
        with open(os.path.join(cache.root, FILE_NAME), encoding="utf-8") as handle:
            stored = json.load(handle)
        if isinstance(stored, dict) and stored.get("fingerprint") == cache.fingerprint and isinstance(stored.get("files"), dict):
            _memo.update(stored["files"])
    except (OSError, ValueError):
        pass


def save() -> None:
    """Write what this run learnt, through the cache (atomically; a failure costs a warning and
    the next run's speed)."""
    if _cache is None or not _changed:
        return
    kept = sorted(_memo, key=lambda digest: digest not in _used)[:MAX_ENTRIES]
    _cache.write_json(os.path.join(_cache.root, FILE_NAME), {"fingerprint": _cache.fingerprint, "files": {d: _memo[d] for d in kept}})


def forget() -> None:
    """Remember for this run only (no cache directory)."""
    global _cache, _changed
    _memo.clear()
    _used.clear()
    _cache, _changed = None, False
