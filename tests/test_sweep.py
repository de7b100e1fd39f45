"""A sample of the reliability sweep (benchmarks/sweep.py): real files from this interpreter's
standard library and site-packages give no internal error, and every LD000 is a file that
Python's own compile() rejects too."""

import sys
import sysconfig

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from sweep import sweep  # noqa: E402


def test_sweep_sample_of_the_standard_library_and_site_packages():
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    report = sweep(roots, sample=150, jobs=2)
    assert report["files"] >= 140
    assert report["internal_errors"] == []
    assert report["ld000_compile_accepts"] == []
    assert report["other_errors"] == []
