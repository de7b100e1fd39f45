"""README's console examples are real output: every `$ loopdoctor check ...` on the shipped
fixtures, `$ loopdoctor rules`, `demo`, `triage` and `run` is run, and what it prints must
equal what README shows."""

import re
import shlex

import pytest

from conftest import ROOT

CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def static_examples():
    """(command, shown output) for the README examples this test can run as they are shown."""
    text = (ROOT / "README.md").read_text()
    for block in CONSOLE_BLOCK.findall(text):
        for example in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, shown = example.partition("\n")
            args = shlex.split(command, comments=True)
            on_fixtures = args[1:2] == ["check"] and any(a.startswith("fixtures/") for a in args)
            if args[:1] == ["loopdoctor"] and (on_fixtures or args[1:2] in (["rules"], ["demo"], ["triage"], ["run"])):
                yield command, args[1:], shown


EXAMPLES = list(static_examples())


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("command, args, shown", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_readme_example_output_is_real(cli, monkeypatch, command, args, shown):
    if args[0] in ("demo", "triage", "run"):
        pytest.importorskip("torch")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    result = cli(*args)
    assert without_trailing_spaces(result.out + result.err) == without_trailing_spaces(shown)


def without_trailing_spaces(text):
    """rich pads wrapped lines; the README, like most editors, does not keep trailing spaces."""
    return "\n".join(line.rstrip() for line in text.splitlines())
