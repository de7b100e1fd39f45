"""Render a list of findings: full (source excerpt and hint), concise, or JSON."""

from __future__ import annotations

import json
import sys
from typing import Optional, Sequence, TextIO

from rich.console import Console
from rich.text import Text

from loopdoctor.static.checker import FileResult
from loopdoctor.static.findings import Finding

OUTPUT_FORMATS = ("full", "concise", "json")


def render(results: Sequence[FileResult], output_format: str, stream: Optional[TextIO] = None) -> None:
    stream = stream or sys.stdout
    findings = [finding for result in results for finding in result.findings]
    if output_format == "json":
        stream.write(json.dumps([f.to_dict() for f in findings], indent=2) + "\n")
        return
    console = Console(file=stream, highlight=False, soft_wrap=True)
    lines_by_file = {result.filename: result.lines for result in results}
    for finding in findings:
        console.print(_headline(finding))
        if output_format == "full":
            _print_excerpt(console, finding, lines_by_file.get(finding.filename, []))
    console.print(summary(findings))


def _headline(finding: Finding) -> Text:
    text = Text()
    text.append(finding.filename, style="bold")
    text.append(f":{finding.location.row}:{finding.location.column}: ", style="cyan")
    text.append(finding.code, style="bold red")
    text.append(f" {finding.message}")
    return text


def _print_excerpt(console: Console, finding: Finding, lines: list[str]) -> None:
    first, last = finding.location.row, min(finding.end_location.row, finding.location.row + 3)
    if not lines or first > len(lines):
        console.print()
        return
    width = len(str(last))
    gutter = " " * width + " |"
    console.print(Text(gutter, style="blue"))
    for row in range(first, min(last, len(lines)) + 1):
        line = Text(f"{row:>{width}} | ", style="blue")
        line.append(lines[row - 1])
        console.print(line)
        start = finding.location.column if row == first else _indent(lines[row - 1]) + 1
        end = finding.end_location.column if row == finding.end_location.row else len(lines[row - 1].rstrip()) + 1
        # Keep tabs under tabs so the carets line up however the terminal expands them.
        padding = "".join(c if c == "\t" else " " for c in lines[row - 1][: start - 1])
        marker = Text(gutter + " " + padding, style="blue")
        marker.append("^" * max(end - start, 1), style="bold red")
        console.print(marker)
    if finding.fix_hint:
        hint = Text(" " * width + " = ", style="blue")
        hint.append("help: ", style="bold cyan")
        hint.append(finding.fix_hint)
        console.print(hint)
    console.print()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def summary(findings: Sequence[Finding]) -> str:
    if not findings:
        return "All checks passed!"
    files = len({f.filename for f in findings})
    problems = "problem" if len(findings) == 1 else "problems"
    in_files = "file" if files == 1 else "files"
    return f"Found {len(findings)} {problems} in {files} {in_files}."
