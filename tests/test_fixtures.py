"""Every fixture's findings, through the real CLI, equal its `# expect:` markers exactly."""

import pytest

from conftest import FIXTURES, expected_findings

FIXTURE_FILES = sorted(FIXTURES.rglob("*.py"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_findings_match_markers(cli, path):
    result = cli("check", "--select", "ALL", "--output-format", "json", path)
    found = {(f["location"]["row"], f["location"]["column"], f["code"]) for f in result.json()}
    assert found == expected_findings(path)
    assert result.code == (1 if found else 0)


def test_every_rule_has_flagged_and_silent_fixtures():
    from loopdoctor.static.rules import ALL_RULES

    for rule in ALL_RULES:
        number = rule.code[2:].lower()
        flagged = FIXTURES / "rules" / f"ld{number}_flagged.py"
        silent = FIXTURES / "rules" / f"ld{number}_silent.py"
        assert {code for *_, code in expected_findings(flagged)} == {rule.code}
        assert silent.exists() and rule.code not in {code for *_, code in expected_findings(silent)}


def test_reference_trainer_variants_cover_every_rule():
    variants = FIXTURES.glob("ticket_trainer_*.py")
    codes = {code for path in variants for *_, code in expected_findings(path)}
    assert {"LD001", "LD002", "LD003", "LD004", "LD005"} <= codes
    assert not expected_findings(FIXTURES / "ticket_trainer.py")


def test_packaged_reference_trainer_is_clean(cli):
    from conftest import ROOT

    result = cli("check", ROOT / "loopdoctor" / "demo" / "reference.py")
    assert result.code == 0, result.out


def test_messages_state_the_problem_and_leave_the_remedy_to_the_help_line(cli):
    import re

    findings = cli("check", "--no-cache", "--select", "ALL", "--output-format", "json", FIXTURES).json()
    assert len(findings) > 50
    remedy = re.compile(r"[;:] (call|use|keep|wrap|weight|step only|pass the) ")
    for finding in findings:
        assert not remedy.search(finding["message"]), finding["message"]
