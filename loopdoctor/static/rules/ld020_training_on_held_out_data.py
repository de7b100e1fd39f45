"""LD020: a loop over validation or test data that backpropagates and steps an optimizer."""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import EVALUATION_LOOP, Flow, iterates_held_out_data
from loopdoctor.static.model import SemanticModel, words_of
from loopdoctor.static.rules.base import BACKWARD_CALL, STEP_CALL, Rule, Violation

# `trainval_loader`, `train_val_data`: the training split of detection and segmentation code.
TRAINING_WORDS = {"train", "trainval", "training"}


class TrainingOnHeldOutData(Rule):
    code = "LD020"
    name = "training-on-held-out-data"
    summary = "A loop over validation or test data that backpropagates and steps an optimizer"
    fix_hint = "train on the training split; evaluate held-out data under `model.eval()` and `torch.no_grad()`"
    required_tokens = (BACKWARD_CALL, STEP_CALL)

    @classmethod
    def wants(cls, source: str) -> bool:
        return super().wants(source) and EVALUATION_LOOP.search(source) is not None

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for function in semantic.functions:
            for loop in function.loops:
                if not flow.is_batch_loop(loop) or not iterates_held_out_data(loop):
                    continue
                if words_of(loop.iter_key) & TRAINING_WORDS:
                    continue
                optimizer = next(iter(flow.loop_effects(loop).steps))
                yield Violation(
                    loop.node.iter,
                    f"`{loop.iter_key}` is held-out data by its name, and this loop backpropagates on it and "
                    f"steps `{optimizer}`: the model learns from the data meant to measure it, so its "
                    "validation or test score overstates how it does on unseen data",
                )
