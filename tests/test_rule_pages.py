"""Every rule has a page in rules/, and every example on it behaves as the page says."""

import re

import pytest

from conftest import ROOT
from loopdoctor.static import CheckOptions, lint_bytes
from loopdoctor.static.rules import ALL_RULES

RUNTIME_ONLY_CODES = ("LD200", "LD201", "LD202", "LD203")  # (their pages are checked below, with torch)
# `$ loopdoctor run fixtures/...` and the findings it prints, in a page's console block.
RUN_BLOCK = re.compile(r"```console\n\$ loopdoctor run (fixtures/\S+)\n(.*?)```", re.S)

PAGES = ROOT / "rules"
SECTIONS = ("What it catches", "Why it matters", "Flagged example", "Fix", "Known limits")


def examples(page_text, section):
    """The python code blocks under one `## section` heading."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", page_text, re.S | re.M)
    assert match, f"missing section {section!r}"
    return re.findall(r"```python\n(.*?)```", match.group(1), re.S)


def codes_in(source):
    result = lint_bytes(source.encode(), "example.py", CheckOptions(select=["ALL"]))
    return [f.code for f in result.findings]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_page_has_every_section(rule):
    text = (PAGES / f"{rule.code}.md").read_text()
    assert text.startswith(f"# {rule.code}: {rule.name}\n")
    for section in SECTIONS:
        assert re.search(rf"^## {re.escape(section)}$", text, re.M), section


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_flagged_examples_are_flagged(rule):
    blocks = examples((PAGES / f"{rule.code}.md").read_text(), "Flagged example")
    assert blocks
    for block in blocks:
        assert rule.code in codes_in(block)


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_fixed_examples_are_clean(rule):
    blocks = examples((PAGES / f"{rule.code}.md").read_text(), "Fix")
    assert blocks
    for block in blocks:
        assert codes_in(block) == []


def test_no_page_without_rule():
    codes = {rule.code for rule in ALL_RULES} | set(RUNTIME_ONLY_CODES)
    assert {page.stem for page in PAGES.glob("LD*.md")} == codes


def run_blocks():
    for page in sorted(PAGES.glob("LD*.md")):
        for fixture, shown in RUN_BLOCK.findall(page.read_text()):
            yield pytest.param(fixture, shown, id=f"{page.stem}:{fixture}")


@pytest.mark.parametrize("fixture, shown", list(run_blocks()))
def test_run_time_examples_print_what_the_page_shows(fixture, shown, capsys, monkeypatch):
    """Every page's `loopdoctor run` example is run, and prints exactly what the page shows."""
    pytest.importorskip("torch")
    from loopdoctor.cli import main

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_COLOR", "1")
    main(["run", fixture])
    printed = "\n".join(line.rstrip() for line in capsys.readouterr().err.splitlines()) + "\n"
    assert printed == shown


def test_run_time_codes_have_complete_pages():
    from loopdoctor.runtime.checks import BY_CODE

    for code, check in BY_CODE.items():
        text = (PAGES / f"{code}.md").read_text()
        assert text.startswith(f"# {code}: {check.name}\n")
        required = SECTIONS if code in RUNTIME_ONLY_CODES else ("At run time",)
        for section in required:
            assert re.search(rf"^## {re.escape(section)}$", text, re.M), (code, section)
        assert f"fixtures/runtime/loop/{code.lower()}_flagged.py" in text

