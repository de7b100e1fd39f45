import json
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

from loopdoctor.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# `# expect: LD005:9, LD012:31`: each finding on this line, by code and 1-based column.
EXPECT = re.compile(r"#\s*expect:\s*((?:LD\d{3}(?::\d+)?[ ,]*)+)")
MARKER = re.compile(r"(LD\d{3})(?::(\d+))?")


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """No test reads or leaves a result cache in the working tree."""
    monkeypatch.setenv("LOOPDOCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def cli(capsys):
    """Run the real `loopdoctor` entry point in-process and capture what it prints."""

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def expected_findings(path):
    """{(row, column, code)} from the `# expect:` markers in a fixture."""
    expected = set()
    for row, line in enumerate(Path(path).read_text().splitlines(), start=1):
        match = EXPECT.search(line)
        for code, column in MARKER.findall(match.group(1)) if match else ():
            assert column, f"{path}:{row}: the marker for {code} needs its column ({code}:N)"
            expected.add((row, int(column), code))
    return expected
