"""Jupyter notebooks: the code cells become one module (a loop in cell 5 uses the model of cell
2), with IPython magics and shell lines blanked, and findings are mapped back to cell and line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Cell magics whose body is not Python: the whole cell is skipped.
FOREIGN_CELL_MAGICS = {"bash", "sh", "script", "html", "javascript", "js", "latex", "markdown", "perl", "ruby", "svg", "writefile", "sql"}
MAGIC_LINE = re.compile(r"^\s*(%|!|\?)|^\s*[\w.]+\?\??\s*$")
SHELL_ASSIGNMENT = re.compile(r"^(\s*[\w.,\s]+=\s*)[!%]")


class NotebookError(Exception):
    pass


@dataclass
class Notebook:
    source: str
    origins: list[tuple[int, int]]  # for each line of ``source``: (cell number from 1, line in cell)
    cell_lines: dict[int, list[str]]

    def locate(self, row: int) -> tuple[int, int]:
        return self.origins[row - 1] if 0 < row <= len(self.origins) else (0, row)


def read_notebook(data: bytes) -> Notebook:
    try:
        document = json.loads(data)
        cells = document["cells"]
        if not isinstance(cells, list):
            raise TypeError("'cells' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise NotebookError(f"not a valid notebook: {error}") from error
    lines: list[str] = []
    origins: list[tuple[int, int]] = []
    cell_lines: dict[int, list[str]] = {}
    code_cell = 0
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        code_cell += 1
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        raw = text.splitlines()
        cell_lines[code_cell] = raw
        for number, line in enumerate(_python_lines(raw), start=1):
            lines.append(line)
            origins.append((code_cell, number))
    return Notebook("\n".join(lines) + "\n", origins, cell_lines)


def _python_lines(raw: list[str]) -> list[str]:
    """The cell's lines with magics and shell escapes replaced by ``pass`` at their indentation."""
    if raw and raw[0].startswith("%%"):
        magic = raw[0][2:].split(maxsplit=1)[0] if raw[0][2:].strip() else ""
        if magic in FOREIGN_CELL_MAGICS:
            return ["" for _ in raw]
        raw = ["", *raw[1:]]
    out = []
    for line in raw:
        assignment = SHELL_ASSIGNMENT.match(line)
        if assignment:  # files = !ls  ->  files = None
            out.append(assignment.group(1) + "None")
        elif MAGIC_LINE.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass")
        else:
            out.append(line)
    return out
