"""What every rule is: a code, a name, the tokens it needs, and one question for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

import libcst as cst

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel


@dataclass(frozen=True)
class Violation:
    """A rule's answer before positions are known: the node to report at and the message."""

    node: cst.CSTNode
    message: str


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    fix_hint: ClassVar[str]
    # A file is worth parsing for this rule only if, for every group, one of its tokens occurs.
    required_tokens: ClassVar[tuple[tuple[str, ...], ...]] = ()
    enabled_by_default: ClassVar[bool] = True

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        raise NotImplementedError

    @classmethod
    def wants(cls, source: str) -> bool:
        return all(any(token in source for token in group) for group in cls.required_tokens)
