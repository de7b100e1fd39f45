"""LD003: a model evaluated while it may still be in training mode."""

from __future__ import annotations

import re

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, FixPlan, InsertLine
from loopdoctor.static.flow import TRAIN, Flow, is_backward
from loopdoctor.static.model import CallSite, Function, Loop, SemanticModel, dotted, words_of
from loopdoctor.static.rules.base import Rule, Violation

EVALUATION_WORDS = {"val", "valid", "validation", "test", "eval", "evaluation", "dev", "holdout"}
DATA_WORDS = {"loader", "dataloader", "dl", "iter", "data", "dataset", "ds", "batches", "set"}
# A file is worth parsing if it disables gradients or loops over something named like held-out data.
WORTH_PARSING = re.compile(
    r"no_grad|inference_mode|set_grad_enabled"
    r"|\bfor\b[^\n]*\bin\b[^\n]*(?:val|valid|test|eval|dev|holdout)[_A-Z]?(?:loader|dl|iter|data|ds|set|batches)",
    re.IGNORECASE,
)
# Lightning switches to eval mode itself before calling these hooks.
LIGHTNING_EVAL_HOOKS = {"validation_step", "test_step", "predict_step", "on_validation_epoch_end", "on_test_epoch_end"}


class MissingEvalMode(Rule):
    code = "LD003"

    @classmethod
    def wants(cls, source: str) -> bool:
        return WORTH_PARSING.search(source) is not None

    def check(self, model: SemanticModel, flow: Flow) -> Iterator[Violation]:
        for context in evaluation_contexts(model, flow):
            for site in context:
                key = dotted(site.node.func)
                if key is None or not model.has_role(key, site.function, "model"):
                    continue
                if _train_mode_chosen_here(site, key, context):
                    break  # `model.train()` inside the no_grad block: BatchNorm re-estimation on purpose
                if TRAIN in flow.mode_before(site, key):
                    yield Violation(
                        site.node,
                        f"`{key}` is evaluated here but may still be in training mode: Dropout stays "
                        f"active and BatchNorm uses and updates batch statistics; call `{key}.eval()` first",
                        _fix(site, key),
                    )
                    break


def _train_mode_chosen_here(site: CallSite, key: str, context: list[CallSite]) -> bool:
    return any(other.receiver == key and other.method == "train" and other.order < site.order for other in context)


def evaluation_contexts(model: SemanticModel, flow: Flow) -> Iterator[list[CallSite]]:
    """Groups of calls, in order, that run a model for evaluation rather than training."""
    for function in model.functions:
        if _is_lightning_hook(function):
            continue
        blocks: dict[int, list[CallSite]] = {}
        for site in function.calls:
            if site.grad_block is not None:
                blocks.setdefault(id(site.grad_block), []).append(site)
        for sites in blocks.values():
            if not _inside_training_step(sites, function, flow):
                yield sites
        for loop in function.loops:
            if _is_evaluation_loop(loop, flow):
                yield [s for s in function.calls if loop.contains(s.order) and s.grad_block is None]


def _is_lightning_hook(function: Function) -> bool:
    cls = function.owner_class
    return cls is not None and cls.is_lightning and function.name in LIGHTNING_EVAL_HOOKS


def _inside_training_step(sites: list[CallSite], function: Function, flow: Flow) -> bool:
    """A no_grad block in the same loop iteration as a backward() is part of a training step
    (targets of a target network, GAN fakes for the discriminator, EMA updates)."""
    block = sites[0].grad_block
    if isinstance(block, cst.FunctionDef):
        return False
    loop: Optional[Loop] = sites[0].loop
    for site in function.calls:
        if site.grad_block is not block and site.loop is loop and is_backward(site):
            return True
        if site.grad_block is not block and site.loop is loop and _calls_training_helper(flow, site):
            return True
    return False


def _calls_training_helper(flow: Flow, site: CallSite) -> bool:
    return any(flow.function_effects(callee).backward for callee in flow.model.callees(site))


def _is_evaluation_loop(loop: Loop, flow: Flow) -> bool:
    words = words_of(loop.iter_key) if loop.iter_key else set()
    if not (words & EVALUATION_WORDS and (words & DATA_WORDS or any(w.endswith("loader") for w in words))):
        return False
    return not flow.loop_effects(loop).trains


def _fix(site: CallSite, key: str) -> Optional[FixPlan]:
    """Unsafe: ``model.eval()`` before the evaluation block and ``model.train()`` after it; it
    changes what the model computes there, which is the point, but also what follows."""
    block = site.grad_block if site.grad_block is not None else (site.loop.node if site.loop else None)
    if not isinstance(block, (cst.With, cst.For, cst.While)):
        return None
    return FixPlan(
        UNSAFE,
        f"call `{key}.eval()` before the evaluation and `{key}.train()` after it",
        (InsertLine(block, f"{key}.eval()"), InsertLine(block, f"{key}.train()", after=True)),
    )
