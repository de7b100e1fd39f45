"""LD008: validation switches to eval mode and the next epoch trains without switching back."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import EVAL, Flow
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import BACKWARD_CALL, Rule, Violation
from loopdoctor.static import roles


class TrainModeNotRestored(Rule):
    code = "LD008"
    name = "train-mode-not-restored"
    summary = "`model.eval()` for validation inside the epoch loop, never undone before the next epoch's training"
    fix_hint = "call `model.train()` at the start of each epoch"
    required_tokens = (("eval",), BACKWARD_CALL)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for loop in function.loops:
                if not flow.is_batch_loop(loop) or loop.parent is None:
                    continue  # only a batch loop inside an epoch loop runs after a validation
                reported = set()
                for site in function.calls:
                    key = roles.called_model(semantic, site) if loop.contains(site.order) else None
                    if key is None or key in reported:
                        continue
                    # The mode at the call, not at the loop's entry: `model.train()` as the first
                    # statement of each batch iteration restores it as well as one per epoch.
                    if EVAL in flow.mode_at(function, loop.node, key) and EVAL in flow.mode_before(site, key) \
                            and _eval_in_epoch(function, loop, key):
                        reported.add(key)
                        yield Violation(
                            site.node,
                            f"from the second epoch on, `{key}` trains in eval mode: the `{key}.eval()` for "
                            f"validation is never undone",
                        )


def _eval_in_epoch(function, loop, key: str) -> bool:
    """An eval() on this model inside an enclosing loop (directly, not in a helper)."""
    outer = loop.parent
    return any(s.receiver == key and s.method == "eval" and outer.contains(s.order) for s in function.calls) or any(
        s.receiver == key and s.method == "train" and s.node.args and outer.contains(s.order) for s in function.calls
    )
