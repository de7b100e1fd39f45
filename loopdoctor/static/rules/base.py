"""What every rule is: its metadata, the tokens it needs, and one question for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import FixPlan
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel


# How a file spells a backward call (``loss.backward()``, ``self.manual_backward(loss)``,
# ``torch.autograd.backward(...)``, ``from torch.autograd import backward``): tighter than the
# word "backward", which every custom ``autograd.Function`` also holds.
BACKWARD_CALL = (".backward(", ".manual_backward(", "import backward")
STEP_CALL = (".step(",)  # optimizer, scaler and scheduler steps are all method calls


@dataclass(frozen=True)
class Violation:
    """A rule's answer before positions are known: the node to report at, the message, and a
    fix when the rule knows one."""

    node: cst.CSTNode
    message: str
    fix: Optional[FixPlan] = None


class Rule:
    """A rule declares its metadata as literal class attributes above its first method, where
    ``catalog.py`` reads them without importing the module."""

    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    fix_hint: ClassVar[str]
    enabled_by_default: ClassVar[bool] = True
    crossfile_tokens: ClassVar[tuple[str, ...]] = ()  # see catalog.RuleInfo
    # A file is worth parsing for this rule only if, for every group, one of its tokens occurs.
    required_tokens: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        raise NotImplementedError

    @classmethod
    def wants(cls, source: str) -> bool:
        return all(any(token in source for token in group) for group in cls.required_tokens)
