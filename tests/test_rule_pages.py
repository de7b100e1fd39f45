"""Every rule has a page in rules/, and every example on it behaves as the page says."""

import re

import pytest

from conftest import ROOT
from loopdoctor.static import CheckOptions, lint_bytes
from loopdoctor.static.rules import ALL_RULES

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
    codes = {rule.code for rule in ALL_RULES}
    assert {page.stem for page in PAGES.glob("LD*.md")} == codes

