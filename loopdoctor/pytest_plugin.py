"""pytest plugin: ``pytest --loopdoctor`` fails a test whose training makes a loop mistake or a
non-finite value.

Registered through the ``pytest11`` entry point and inert unless asked for: no hooks and no
torch import without ``--loopdoctor``, the ``loopdoctor`` marker or the ``loopdoctor`` fixture.

- ``--loopdoctor``: every module and optimizer created or run during each test is watched; a
  loop mistake (LD001-LD018, LD201-LD203) or the first non-finite value (LD200) fails the test:
  the failure is the first finding's headline, the report's "loopdoctor" section every finding. ``--loopdoctor-mode=warn`` (or ``loopdoctor_mode = warn`` in the
  ini file) records without failing.
- ``@pytest.mark.loopdoctor`` (optionally ``(mode="warn")``) turns watching on for one test.
- The ``loopdoctor`` fixture watches what a test hands it: ``loopdoctor.watch(model, optimizer)``,
  then ``loopdoctor.findings``.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

MODES = ("raise", "warn")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopdoctor", "report loop mistakes and the first NaN/Inf in PyTorch training")
    group.addoption("--loopdoctor", action="store_true", help="watch every model and optimizer in each test")
    group.addoption(
        "--loopdoctor-mode", choices=MODES, default=None,
        help="raise (default): fail the test on a finding (stopping at a non-finite value); warn: report without failing",
    )
    parser.addini("loopdoctor_mode", "default for --loopdoctor-mode: raise or warn", default="raise")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loopdoctor(mode='raise'): watch this test for loop mistakes and non-finite values")
    mode = _configured_mode(config)
    if mode not in MODES:
        raise pytest.UsageError(f"loopdoctor_mode must be raise or warn, not {mode!r}")


def _configured_mode(config: pytest.Config) -> str:
    return config.getoption("loopdoctor_mode") or config.getini("loopdoctor_mode").strip() or "raise"


def _mode_for(item: pytest.Item) -> Optional[str]:
    marker = item.get_closest_marker("loopdoctor")
    if marker is not None:
        return marker.kwargs.get("mode", marker.args[0] if marker.args else _configured_mode(item.config))
    return _configured_mode(item.config) if item.config.getoption("loopdoctor") else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    mode = _mode_for(item)
    if mode is None:
        yield
        return
    from loopdoctor.runtime import GlobalWatch, NonFiniteError

    # Raise mode stops the test at the first non-finite value; warn mode only records.
    watch = GlobalWatch(mode="raise" if mode == "raise" else "record", loop_warnings=False).attach()
    outcome = yield
    error = outcome.excinfo[1] if outcome.excinfo else None
    try:
        watch.close(error)  # what the test's last forward pass left, or a note on its error
    except NonFiniteError:
        pass  # recorded in watch.findings
    findings = watch.findings
    if not findings:
        return
    item.add_report_section("call", "loopdoctor", "\n\n".join(str(finding) for finding in findings))
    if mode == "raise" and (error is None or isinstance(error, NonFiniteError)):
        # The diagnosis is in the report section; the failure says what, without our frames.
        # (A test that swallowed the error, or a value after the last step, fails too.)
        more = f" (and {len(findings) - 1} more finding(s))" if len(findings) > 1 else ""
        outcome.force_exception(pytest.fail.Exception(str(findings[0]).splitlines()[0] + more, pytrace=False))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, content in getattr(report, "sections", []):
                if name == "Captured loopdoctor call" and getattr(report, "when", None) == "call":
                    lines.add(f"{report.nodeid}: {content.splitlines()[0]}")
    if lines:
        terminalreporter.section("loopdoctor")
        for line in sorted(lines):
            terminalreporter.write_line(line)


class _Fixture:
    """What the ``loopdoctor`` fixture gives a test."""

    def __init__(self) -> None:
        self._watches: list = []

    def watch(self, model: Any = None, optimizer: Any = None, scaler: Any = None, **options: Any):
        from loopdoctor.runtime import Watch

        watch = Watch(model, optimizer, scaler, **options).attach()
        self._watches.append(watch)
        return watch

    @property
    def findings(self) -> list:
        return [finding for watch in self._watches for finding in watch.findings]

    def close(self) -> None:
        for watch in self._watches:
            watch.detach()


@pytest.fixture
def loopdoctor():
    helper = _Fixture()
    yield helper
    helper.close()
