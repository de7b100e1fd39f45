"""The rule registry: every rule class, in code order."""

from __future__ import annotations

from loopdoctor.static.rules.base import Rule, Violation
from loopdoctor.static.rules.ld001_softmax_before_cross_entropy import SoftmaxBeforeCrossEntropy
from loopdoctor.static.rules.ld002_zero_grad_outside_batch_loop import ZeroGradOutsideBatchLoop
from loopdoctor.static.rules.ld003_missing_eval_mode import MissingEvalMode
from loopdoctor.static.rules.ld004_state_dict_snapshot_not_copied import StateDictSnapshotNotCopied
from loopdoctor.static.rules.ld005_clip_before_unscale import ClipBeforeUnscale
from loopdoctor.static.rules.ld100_unused_noqa import UnusedNoqa

ALL_RULES: tuple[type[Rule], ...] = (
    SoftmaxBeforeCrossEntropy,
    ZeroGradOutsideBatchLoop,
    MissingEvalMode,
    StateDictSnapshotNotCopied,
    ClipBeforeUnscale,
    UnusedNoqa,
)
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}

PARSE_ERROR_CODE = "LD000"
PARSE_ERROR_NAME = "parse-error"

__all__ = ["ALL_RULES", "RULES_BY_CODE", "PARSE_ERROR_CODE", "PARSE_ERROR_NAME", "Rule", "Violation"]
