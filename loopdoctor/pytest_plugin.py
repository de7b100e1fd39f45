"""pytest plugin: ``pytest --loopdoctor`` fails a test in which a non-finite value appears.

Registered through the ``pytest11`` entry point and inert unless asked for: no hooks and no
torch import without ``--loopdoctor``, the ``loopdoctor`` marker or the ``loopdoctor`` fixture.

- ``--loopdoctor`` (or ``--loopdoctor=raise``): every module and optimizer created or run during
  each test is watched; the first non-finite value fails the test, and the report carries a
  "loopdoctor" section with the diagnosis. ``--loopdoctor=warn`` records without failing.
- ``@pytest.mark.loopdoctor`` (optionally ``(mode="warn")``) turns watching on for one test.
- The ``loopdoctor`` fixture watches what a test hands it: ``loopdoctor.watch(model, optimizer)``,
  then ``loopdoctor.findings``.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopdoctor", "report the first NaN/Inf in PyTorch training")
    group.addoption(
        "--loopdoctor", nargs="?", const="raise", default=None, choices=("raise", "warn"),
        help="watch every model and optimizer in each test; 'warn' records without failing",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loopdoctor(mode='raise'): watch this test for non-finite values")


def _mode_for(item: pytest.Item) -> Optional[str]:
    marker = item.get_closest_marker("loopdoctor")
    if marker is not None:
        return marker.kwargs.get("mode", marker.args[0] if marker.args else "raise")
    return item.config.getoption("loopdoctor")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    mode = _mode_for(item)
    if mode is None:
        yield
        return
    from loopdoctor.runtime import GlobalWatch, NonFiniteError

    watch = GlobalWatch(mode=mode).attach()
    try:
        outcome = yield
    finally:
        watch.detach()
    findings = watch.findings
    if not findings:
        return
    item.add_report_section("call", "loopdoctor", "\n\n".join(str(d) for d in findings[:1]) + _more(findings))
    if mode == "raise" and outcome.excinfo is None:
        # The test swallowed the error (or the value appeared after the last step): fail anyway.
        outcome.force_exception(NonFiniteError(findings[0]))


def _more(findings: list) -> str:
    return f"\n({len(findings) - 1} more finding(s) after the first)" if len(findings) > 1 else ""


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
