"""Render a list of findings: full (source excerpt and help), concise, JSON, SARIF or GitHub
annotations. A finding whose fix ``--fix`` would apply is marked ``[*]``, as ruff marks them."""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
from collections import Counter
from typing import Optional, Sequence, TextIO
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from loopdoctor.static.findings import FileResult
from loopdoctor.static.findings import Finding

def render(
    results: Sequence[FileResult],
    output_format: str,
    stream: Optional[TextIO] = None,
    *,
    quiet: bool = False,
    statistics: bool = False,
    fixed: int = 0,
    unsafe_fixes: bool = False,
) -> None:
    stream = stream or sys.stdout
    findings = [finding for result in results for finding in result.findings]
    if output_format == "json":
        stream.write(json.dumps([f.to_dict() for f in findings], indent=2) + "\n")
        return
    if output_format == "sarif":
        stream.write(json.dumps(sarif(findings), indent=2) + "\n")
        return
    if output_format == "github":
        for finding in findings:
            stream.write(github_annotation(finding) + "\n")
        return
    console = Console(file=stream, highlight=False, soft_wrap=True)
    if statistics:
        _print_statistics(console, findings)
        return
    by_file = {result.filename: result for result in results}
    for finding in findings:
        console.print(_headline(finding, unsafe_fixes))
        if output_format == "full":
            _print_excerpt(console, finding, _lines_for(by_file.get(finding.filename), finding))
    if not quiet:
        console.print(summary(findings, fixed, unsafe_fixes))


def _lines_for(result: Optional[FileResult], finding: Finding) -> list[str]:
    if result is None:
        return []
    return result.cell_lines.get(finding.cell, []) if finding.cell is not None else result.lines


def _print_statistics(console: Console, findings: Sequence[Finding]) -> None:
    counts = Counter((f.code, f.name) for f in findings)
    for (code, name), count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        console.print(f"{count:>5}  {code}  {name}")


def sarif(findings: Sequence[Finding]) -> dict:
    """A SARIF 2.1.0 log: one run, every rule's metadata, one result a finding. Paths under the
    working directory are relative URIs against the ``PROJECTROOT`` base, as code-scanning
    services expect."""
    from loopdoctor import __version__
    from loopdoctor.static.rules import ALL_RULES, page_url

    descriptors = [
        {
            "id": rule.code, "name": rule.name, "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": _what_it_catches(rule.code) or rule.summary},
            "help": {"text": rule.fix_hint}, "helpUri": page_url(rule.code),
        }
        for rule in ALL_RULES
    ]
    index = {descriptor["id"]: number for number, descriptor in enumerate(descriptors)}
    results = []
    for finding in findings:
        region = {
            "startLine": finding.location.row,
            "startColumn": finding.location.column,
            "endLine": finding.end_location.row,
            "endColumn": finding.end_location.column,
        }
        location: dict = {"physicalLocation": {"artifactLocation": _artifact(finding.filename), "region": region}}
        if finding.cell is not None:
            location["logicalLocations"] = [{"name": f"cell {finding.cell}", "kind": "module"}]
        results.append({
            "ruleId": finding.code,
            "ruleIndex": index[finding.code],
            "level": "error",
            "message": {"text": finding.message},
            "locations": [location],
        })
    driver = {"name": "loopdoctor", "version": __version__, "informationUri": "https://pypi.org/project/loopdoctor/", "rules": descriptors}
    root = pathlib.Path(os.getcwd()).as_uri() + "/"
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "originalUriBaseIds": {"PROJECTROOT": {"uri": root}}, "results": results}],
    }


def _artifact(filename: str) -> dict:
    absolute = os.path.abspath(filename)
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return {"uri": pathlib.Path(absolute).as_uri()}
    return {"uri": quote(relative.replace(os.sep, "/")), "uriBaseId": "PROJECTROOT"}


def _what_it_catches(code: str) -> str:
    """The first section of the rule's page, as one paragraph."""
    from importlib import resources

    try:
        text = resources.files("loopdoctor").joinpath("rule_pages", f"{code}.md").read_text(encoding="utf-8")
    except OSError:
        return ""
    match = re.search(r"^## What it catches\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return " ".join(match.group(1).split()) if match else ""


def github_annotation(finding: Finding) -> str:
    """A GitHub Actions workflow command that annotates the line in the pull request."""
    def escape_property(value: str) -> str:
        return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")

    message = f"{finding.code} {finding.message}".replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    cell = f" (cell {finding.cell})" if finding.cell is not None else ""
    return (
        f"::error title={escape_property(f'loopdoctor ({finding.code}){cell}')},file={escape_property(finding.filename)},"
        f"line={finding.location.row},col={finding.location.column},"
        f"endLine={finding.end_location.row},endColumn={finding.end_location.column}::{message}"
    )


def _headline(finding: Finding, unsafe_fixes: bool) -> Text:
    text = Text()
    position = finding.place[len(finding.filename):]
    text.append(finding.filename, style="bold")
    text.append(position + ": ", style="cyan")
    text.append(finding.code, style="bold red")
    if finding.fix is not None and finding.fix.applies(unsafe_fixes):
        text.append(" [*]", style="cyan")
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
    help_text = finding.fix.message if finding.fix is not None else finding.fix_hint
    if help_text:
        hint = Text(" " * width + " = ", style="blue")
        hint.append("help: ", style="bold cyan")
        hint.append(help_text)
        console.print(hint)
    console.print()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def summary(findings: Sequence[Finding], fixed: int = 0, unsafe_fixes: bool = False) -> str:
    if not findings and not fixed:
        return "All checks passed!"
    total = len(findings) + fixed
    files = len({f.filename for f in findings})
    problems = "problem" if total == 1 else "problems"
    if fixed:
        line = f"Found {total} {problems} ({fixed} fixed, {len(findings)} remaining)."
    else:
        in_files = "file" if files == 1 else "files"
        line = f"Found {total} {problems} in {files} {in_files}."
    safe = sum(1 for f in findings if f.fix is not None and f.fix.applies(unsafe=False))
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.applies(unsafe=True)) - safe
    if safe:
        line += f"\n{safe} fixable with `--fix`."
    if unsafe and not unsafe_fixes:
        line += f"\n{unsafe} more fixable with `--fix --unsafe-fixes` (review those changes)."
    elif unsafe:
        line += f"\n{unsafe} fixable with `--fix --unsafe-fixes`."
    return line
