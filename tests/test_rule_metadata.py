"""Each rule declares its metadata once, in its own module: the catalog (read without importing
the rules), the imported classes, `loopdoctor rules` and README's table all say the same."""

import re
from pathlib import Path

import pytest

from conftest import ROOT
from loopdoctor.static.rules import ALL_RULES
from loopdoctor.static.rules.catalog import RULES_DIRECTORY, read_metadata

FIELDS = ("code", "name", "summary", "fix_hint", "enabled_by_default", "crossfile_tokens")


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_catalog_reads_what_the_rule_class_declares(rule):
    cls = rule.load()
    assert {field: getattr(cls, field) for field in FIELDS} == {field: getattr(rule, field) for field in FIELDS}
    assert cls.__module__.endswith("." + rule.implementation.partition(":")[0])
    for field in ("code", "name", "summary", "fix_hint"):
        assert field in vars(cls), f"{rule.code} inherits {field} instead of declaring it"


def test_every_rule_module_is_in_the_catalog():
    modules = sorted(p.stem for p in Path(RULES_DIRECTORY).glob("ld[0-9][0-9][0-9]_*.py"))
    assert [rule.implementation.partition(":")[0] for rule in ALL_RULES] == modules
    assert all(module[2:5] == rule.code[2:] for module, rule in zip(modules, ALL_RULES))


def test_metadata_below_a_method_is_not_read(tmp_path, monkeypatch):
    """The catalog reads only the class's leading attributes: what a method assigns is no metadata."""
    source = (
        'class Example(Rule):\n    code = "LD999"\n    name = "example"\n    summary = "An example"\n'
        '    fix_hint = "none"\n\n    def check(self):\n        enabled_by_default = False\n'
    )
    (tmp_path / "ld999_example.py").write_text(source)
    monkeypatch.setattr("loopdoctor.static.rules.catalog.RULES_DIRECTORY", str(tmp_path))
    info = read_metadata("ld999_example.py")
    assert (info.code, info.name, info.enabled_by_default, info.implementation) == ("LD999", "example", True, "ld999_example:Example")


def test_a_module_without_a_rule_class_is_named(tmp_path, monkeypatch):
    (tmp_path / "ld998_broken.py").write_text("code = 'LD998'\n")
    monkeypatch.setattr("loopdoctor.static.rules.catalog.RULES_DIRECTORY", str(tmp_path))
    with pytest.raises(ValueError, match="ld998_broken.py"):
        read_metadata("ld998_broken.py")


def readme_row(rule) -> str:
    off = "" if rule.enabled_by_default else " (off by default)"
    return f"| [{rule.code}](rules/{rule.code}.md) | {rule.name} | {rule.summary}{off} |"


def readme_with_current_rules(readme: str, rules_output: str) -> str:
    """README with its two generated rule lists rewritten: the table, and the output of
    `$ loopdoctor rules`."""
    table = "\n".join(readme_row(rule) for rule in ALL_RULES) + "\n"
    readme = re.sub(r"^(?:\| \[LD\d{3}\].*\n)+", lambda _: table, readme, count=1, flags=re.M)
    return re.sub(r"(^\$ loopdoctor rules\n)(?:LD\d{3} .*\n)+", lambda m: m.group(1) + rules_output, readme, count=1, flags=re.M)


def test_readme_rule_lists_are_the_rules_word_for_word(cli, request):
    """Generated: after adding a rule, `pytest tests/test_rule_metadata.py --snapshot-update`
    writes its row (and `loopdoctor rules`'s line) into README."""
    path = ROOT / "README.md"
    readme = path.read_text()
    current = readme_with_current_rules(readme, cli("rules").out)
    if request.config.option.update_snapshots and current != readme:
        path.write_text(current)
    assert readme == current or request.config.option.update_snapshots, "README's rule lists are stale: run with --snapshot-update"


def test_rules_command_lists_each_summary(cli):
    out = cli("rules").out
    for rule in ALL_RULES:
        assert re.search(rf"^{rule.code}\s+{re.escape(rule.name)}\s+{re.escape(rule.summary)}", out, re.M), rule.code


def test_run_time_only_codes_are_read_as_their_checks_declare_them():
    pytest.importorskip("torch")
    from loopdoctor.runtime.checks import BY_CODE
    from loopdoctor.static.rules.catalog import run_time_only

    infos = run_time_only()
    assert [info.code for info in infos] == ["LD200", "LD201", "LD202", "LD203"]
    for info in infos:
        check = BY_CODE[info.code]
        assert (info.name, info.summary, info.fix_hint) == (check.name, check.summary, check.fix_hint)
