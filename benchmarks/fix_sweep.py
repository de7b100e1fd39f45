"""Apply every fix (safe and unsafe) to copies of real code and check the results.

    python benchmarks/fix_sweep.py DIR [DIR ...]

Each directory is copied to a temporary folder; `loopdoctor check --fix --unsafe-fixes` runs on
the copy; then every changed file must still parse, and re-checking must show exactly the
findings that had no fix. Prints the counts; exits 1 on any violation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import libcst


def check_json(root: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "loopdoctor", "check", "--no-cache", "--no-respect-gitignore",
                           "--exit-zero", "--output-format", "json", root], capture_output=True, text=True)
    return json.loads(done.stdout)


def sweep(directory: str) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        copy = os.path.join(temporary, os.path.basename(os.path.normpath(directory)))
        shutil.copytree(directory, copy, symlinks=True)
        before = check_json(copy)
        fixable = [f for f in before if f["fix"]]
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
            "directory": directory, "findings": len(before), "with_fix": len(fixable),
            "safe": sum(f["fix"]["applicability"] == "safe" for f in fixable),
            "files_changed": len(changed), "unparsable": unparsable,
            "remaining": len(after), "expected_remaining": len(before) - len(fixable),
        }


def main() -> int:
    failed = False
    for directory in sys.argv[1:]:
        r = sweep(directory)
        ok = not r["unparsable"] and r["remaining"] == r["expected_remaining"]
        failed |= not ok
        print(f"{r['directory']}: {r['findings']} findings, {r['with_fix']} with a fix ({r['safe']} safe), "
              f"{r['files_changed']} files changed, {len(r['unparsable'])} unparsable, "
              f"{r['remaining']} remaining (expected {r['expected_remaining']}) {'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
