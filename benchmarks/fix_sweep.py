"""Apply every fix (safe and unsafe) to copies of real code and check the results.

    python benchmarks/fix_sweep.py [--mutate] DIR [DIR ...]

Each directory is copied to a temporary folder; `loopdoctor check --fix --unsafe-fixes` runs on
the copy; then every changed file must still parse, and re-checking must show exactly the
findings that had no fix. Prints the counts; exits 1 on any violation.

Correct code has nothing to fix, so `--mutate` first plants the mistakes into the copies, by
small textual edits of real lines (a deep copy of a state dict dropped, an `unscale_` or an
`.eval()` line deleted, the logits of a loss call wrapped in softmax); a mutated file that no
longer parses is restored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import libcst

MUTATIONS = [
    (re.compile(r"\b(?:copy\.)?deepcopy\(((?:self\.)?[\w.]+\.state_dict\(\))\)"), r"\1"),
    (re.compile(r"^[ \t]+[\w.]*scaler\.unscale_\([^\n]*\)[ \t]*(#[^\n]*)?\n", re.M), ""),
    (re.compile(r"^[ \t]+(?:self\.)?(?:net|model)\.eval\(\)[ \t]*(#[^\n]*)?\n", re.M), ""),
    (re.compile(r"^([ \t]+\w+ = (?:self\.)?(?:loss|criterion|loss_fn)\()(\w+)(, )", re.M), r"\1torch.softmax(\2, dim=1)\3"),
]


def mutate(root: str) -> int:
    """Plant mistakes into the Python files under ``root``; returns how many files changed."""
    changed = 0
    for directory, _, files in os.walk(root):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(directory, file)
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                text = handle.read()
            if "torch" not in text:
                continue
            mutated = text
            for pattern, replacement in MUTATIONS:
                mutated = pattern.sub(replacement, mutated)
            if mutated == text:
                continue
            try:
                libcst.parse_module(mutated)
            except Exception:
                continue  # e.g. a block left empty: keep the original
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(mutated)
            changed += 1
    return changed


def check_json(root: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "loopdoctor", "check", "--no-cache", "--no-respect-gitignore",
                           "--exit-zero", "--output-format", "json", root], capture_output=True, text=True)
    return json.loads(done.stdout)


def sweep(directory: str, planted: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        copy = os.path.join(temporary, os.path.basename(os.path.normpath(directory)))
        shutil.copytree(directory, copy, symlinks=True)
        mutated = mutate(copy) if planted else 0
        before = check_json(copy)
        fixable = [f for f in before if f["fix"] and f["fix"]["applicability"] != "display-only"]  # never applied
        originals = {f["filename"]: open(f["filename"], "rb").read() for f in fixable}
        subprocess.run([sys.executable, "-m", "loopdoctor", "check", "--no-cache", "--no-respect-gitignore",
                        "--fix", "--unsafe-fixes", "--quiet", copy], capture_output=True)
        changed = [name for name, data in originals.items() if open(name, "rb").read() != data]
        unparsable = []
        for name in changed:
            try:
                libcst.parse_module(open(name, "rb").read())
            except Exception:
                unparsable.append(name)
        after = check_json(copy)
        return {
            "directory": directory, "mutated": mutated, "findings": len(before), "with_fix": len(fixable),
            "safe": sum(f["fix"]["applicability"] == "safe" for f in fixable),
            "files_changed": len(changed), "unparsable": unparsable,
            "remaining": len(after), "expected_remaining": len(before) - len(fixable),
        }


def main() -> int:
    failed = False
    planted = "--mutate" in sys.argv[1:]
    for directory in [a for a in sys.argv[1:] if a != "--mutate"]:
        r = sweep(directory, planted)
        ok = not r["unparsable"] and r["remaining"] == r["expected_remaining"]
        failed |= not ok
        print(f"{r['directory']}: {r['mutated']} files mutated, {r['findings']} findings, {r['with_fix']} with a fix ({r['safe']} safe), "
              f"{r['files_changed']} files changed, {len(r['unparsable'])} unparsable, "
              f"{r['remaining']} remaining (expected {r['expected_remaining']}) {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
