"""Positions computed statement by statement (static/positions.py) equal libcst's whole-module
PositionProvider, on the fixtures and on layouts chosen to break the line arithmetic."""

import ast

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from conftest import FIXTURES
from loopdoctor.static.positions import positions_of
from loopdoctor.static.walk import walk

TRICKY = {
    "decorators_and_comments": "# header\n\n\n@a\n# between\n@b(1)\ndef f():\n    return g(1)\n\n# trailing comment\nx = f()\n",
    "semicolons": "import torch; x = torch.ones(1)\ny = x.sum(); z = y\n",
    "tabs_crlf": "def f(model):\r\n\tif model:\r\n\t\treturn model(1)\r\n\treturn None\r\n",
    "multiline_strings": 'DOC = """\nline\n"""\n\n\nclass C:\n    """Doc\n    more"""\n    def m(self):\n        return call(  # c\n            1,\n        )\n',
    "docstring_and_future": '"""Module."""\nfrom __future__ import annotations\n\nimport os\nprint(os.sep)\n',
}
SOURCES = {**TRICKY, **{path.name: path.read_text() for path in sorted(FIXTURES.rglob("*.py")) if path.name != "ld000_flagged.py" and path.read_text().strip()}}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_statement_positions_equal_the_whole_module(name):
    text = SOURCES[name]
    module = cst.parse_module(text)
    full = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    calls = [node for node in walk(module) if isinstance(node, (cst.Call, cst.BaseStatement))]
    assert calls
    mine = positions_of(module, ast.parse(text), calls)
    assert all(mine[node] == full[node] for node in calls)
