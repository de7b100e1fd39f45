"""A fast child iterator for libcst trees.

libcst's own visitor machinery rebuilds every node and descends into whitespace, commas and
parentheses; the semantic model only needs expressions and statements. Iterating the dataclass
fields that can hold such nodes, with the field list cached per node type, walks the same tree
several times faster.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import libcst as cst

# Fields that only ever hold formatting or punctuation, never code the rules care about.
_FORMATTING_FIELDS = frozenset(
    {
        "lpar", "rpar", "comma", "semicolon", "leading_lines", "lines_after_decorators",
        "header", "footer", "newline", "trailing_whitespace", "operator", "equal", "colon",
        "dot", "lbracket", "rbracket", "lbrace", "rbrace", "star", "asynchronous",
        "empty_lines", "relative", "first_line",
        "default_comma", "whitespace", "encoding", "default_indent", "default_newline",
        "has_trailing_newline", "indent", "quote", "prefix", "value_whitespace",
    }
)

_FIELD_CACHE: dict[type, tuple[str, ...]] = {}


def _code_fields(node_type: type) -> tuple[str, ...]:
    names = tuple(
        field.name
        for field in dataclasses.fields(node_type)
        if field.name not in _FORMATTING_FIELDS and not field.name.startswith("whitespace")
    )
    _FIELD_CACHE[node_type] = names
    return names


def iter_children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Yield the code-bearing children of ``node`` in source order."""
    fields = _FIELD_CACHE.get(type(node)) or _code_fields(type(node))
    for name in fields:
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif type(value) is tuple or type(value) is list:
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every code-bearing node below it."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(iter_children(current))
