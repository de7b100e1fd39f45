"""Property-based tests: random modules and random edits of the fixtures never crash the
checker, JSON output always parses, and the same input always gives the same output."""

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from loopdoctor.static import CheckOptions, lint_bytes
from loopdoctor.static.output import render

SOURCES = [path.read_text() for path in sorted(FIXTURES.rglob("*.py"))]
ALL_RULES = CheckOptions(select=["ALL"])
FRAGMENTS = ["(", ")", ":", "\n", "    ", "\t", "model.eval()\n", "with torch.no_grad():\n", "optimizer.zero_grad()\n",
             "F.softmax(x)", "'", '"""', "\\", "lambda: ", "for x in val_loader:\n", "\x0c", "\r\n", "é", "\x00"]


@st.composite
def edited_fixture(draw):
    lines = draw(st.sampled_from(SOURCES)).splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "swap", "truncate"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "insert":
            lines.insert(i, draw(st.sampled_from(FRAGMENTS)))
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut]
    return "".join(lines)


def json_output(source: str) -> str:
    result = lint_bytes(source.encode("utf-8", "surrogatepass"), "edited.py", ALL_RULES)
    stream = io.StringIO()
    render([result], "json", stream)
    return stream.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_fixture())
def test_random_edits_never_crash_and_json_always_parses(source):
    first = json_output(source)
    findings = json.loads(first)
    assert all(f["code"].startswith("LD") and f["location"]["row"] >= 1 for f in findings)
    assert json_output(source) == first  # deterministic


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # hypothesmith compiles odd but valid code
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_random_valid_modules(data):
    hypothesmith = pytest.importorskip("hypothesmith")
    source = data.draw(hypothesmith.from_node())
    first = json_output(source)
    json.loads(first)
    assert json_output(source) == first
