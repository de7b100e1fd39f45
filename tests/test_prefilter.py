"""The token prefilter skips files that no selected rule could flag, and only those."""

from conftest import FIXTURES

from loopdoctor.static import CheckOptions, lint_bytes
from loopdoctor.static.rules import ALL_RULES


def parsed(path, codes=("ALL",)):
    return lint_bytes(path.read_bytes(), str(path), CheckOptions(select=list(codes))).parsed


def test_custom_autograd_function_is_not_parsed():
    assert not parsed(FIXTURES / "prefilter" / "autograd_function.py")


def test_functional_backward_is_parsed_for_the_training_rules():
    assert parsed(FIXTURES / "prefilter" / "functional_backward.py", ["LD002"])


def test_every_flagged_fixture_passes_its_own_rules_prefilter():
    for rule in ALL_RULES:
        if rule.code in ("LD000", "LD100"):  # parse errors and unused noqa need no tokens
            continue
        flagged = FIXTURES / "rules" / f"ld{rule.code[2:].lower()}_flagged.py"
        assert parsed(flagged, [rule.code]), rule.code
