"""Every rule's code, name, summary and fix hint, without importing any rule (or libcst).

Selection, the cache key and ``loopdoctor rules`` need only this; the implementation is imported
when a file is actually parsed, which keeps a cached run and a pre-commit hook quick to start.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleInfo:
    code: str
    name: str
    summary: str
    fix_hint: str
    enabled_by_default: bool
    implementation: str  # "module:Class" inside loopdoctor.static.rules; "" for LD000

    def load(self):
        """The rule class; None for LD000, which the checker reports itself."""
        if not self.implementation:
            return None
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(f"loopdoctor.static.rules.{module}"), cls)


PARSE_ERROR_CODE = "LD000"
PARSE_ERROR_NAME = "parse-error"

CATALOG: tuple[RuleInfo, ...] = (
    RuleInfo(
        PARSE_ERROR_CODE, PARSE_ERROR_NAME,
        "A file that cannot be read, decoded or parsed as Python (or a notebook), so nothing in it is checked",
        "fix the syntax error (or the encoding) the message names",
        True, "",
    ),
    RuleInfo(
        "LD001", "softmax-before-cross-entropy",
        "Probabilities from softmax passed as the input of CrossEntropyLoss / F.cross_entropy",
        "pass the raw logits: cross-entropy applies log-softmax itself",
        True, "ld001_softmax_before_cross_entropy:SoftmaxBeforeCrossEntropy",
    ),
    RuleInfo(
        "LD002", "zero-grad-outside-batch-loop",
        "Optimizer stepped every batch while its gradients are not cleared inside the batch loop",
        "call `optimizer.zero_grad()` inside the batch loop, once per optimizer step",
        True, "ld002_zero_grad_outside_batch_loop:ZeroGradOutsideBatchLoop",
    ),
    RuleInfo(
        "LD003", "missing-eval-mode",
        "Model evaluated without `model.eval()` on every path before it",
        "call `model.eval()` before evaluating and `model.train()` before training again",
        True, "ld003_missing_eval_mode:MissingEvalMode",
    ),
    RuleInfo(
        "LD004", "state-dict-snapshot-not-copied",
        "`state_dict()` kept as a snapshot while training continues, without `copy.deepcopy`",
        "store `copy.deepcopy(model.state_dict())` (or `{k: v.detach().clone() ...}`)",
        True, "ld004_state_dict_snapshot_not_copied:StateDictSnapshotNotCopied",
    ),
    RuleInfo(
        "LD005", "clip-before-unscale",
        "Gradient clipping applied to scaled gradients, before `scaler.unscale_(optimizer)`",
        "call `scaler.unscale_(optimizer)` after backward and before clipping",
        True, "ld005_clip_before_unscale:ClipBeforeUnscale",
    ),
    RuleInfo(
        "LD006", "eval-without-no-grad",
        "Model evaluated (validation/test loop, or a loop in eval mode) outside `torch.no_grad()` / `inference_mode()`",
        "wrap the evaluation in `with torch.no_grad():`",
        True, "ld006_eval_without_no_grad:EvalWithoutNoGrad",
    ),
    RuleInfo(
        "LD007", "loss-accumulated-with-graph",
        "A graph-connected loss kept across iterations (`total += loss`, `losses.append(loss)`)",
        "keep `loss.item()` (or `loss.detach()`)",
        True, "ld007_loss_accumulated_with_graph:LossAccumulatedWithGraph",
    ),
    RuleInfo(
        "LD008", "train-mode-not-restored",
        "`model.eval()` for validation inside the epoch loop, never undone before the next epoch's training",
        "call `model.train()` at the start of each epoch",
        True, "ld008_train_mode_not_restored:TrainModeNotRestored",
    ),
    RuleInfo(
        "LD009", "zero-grad-between-backward-and-step",
        "Gradients cleared after `backward()` and before `step()`: the update uses zeros",
        "clear the gradients before `backward()` (or after `step()`)",
        True, "ld009_zero_grad_between_backward_and_step:ZeroGradBetweenBackwardAndStep",
    ),
    RuleInfo(
        "LD010", "backward-without-step",
        "A loop that clears and backpropagates but never steps its optimizer, or steps before `backward()`",
        "call `optimizer.step()` after `backward()` in each iteration",
        True, "ld010_backward_without_step:BackwardWithoutStep",
    ),
    RuleInfo(
        "LD011", "sigmoid-before-bce-with-logits",
        "Sigmoid output passed to `BCEWithLogitsLoss` / `binary_cross_entropy_with_logits`",
        "pass the raw logits: the loss applies sigmoid itself",
        True, "ld011_sigmoid_before_bce_with_logits:SigmoidBeforeBceWithLogits",
    ),
    RuleInfo(
        "LD012", "softmax-before-nll-loss",
        "`softmax` (not `log_softmax`) into `NLLLoss`, or `log(softmax(x))` in two steps",
        "use `log_softmax(x)` (or CrossEntropyLoss on the logits)",
        True, "ld012_softmax_before_nll_loss:SoftmaxBeforeNllLoss",
    ),
    RuleInfo(
        "LD013", "scaler-step-bypassed",
        "After `scaler.scale(loss).backward()`, `optimizer.step()` called directly, or `scaler.update()` missing",
        "step through `scaler.step(optimizer)` and call `scaler.update()` once per iteration",
        True, "ld013_scaler_step_bypassed:ScalerStepBypassed",
    ),
    RuleInfo(
        "LD014", "scheduler-before-optimizer-step",
        "`lr_scheduler.step()` before `optimizer.step()` in the same iteration",
        "step the scheduler after the optimizer",
        True, "ld014_scheduler_before_optimizer_step:SchedulerBeforeOptimizerStep",
    ),
    RuleInfo(
        "LD015", "torch-load-without-weights-only",
        "`torch.load` without `weights_only=True`: an untrusted checkpoint can run code",
        "pass `weights_only=True` (and load plain tensors and containers only)",
        True, "ld015_torch_load_without_weights_only:TorchLoadWithoutWeightsOnly",
    ),
    RuleInfo(
        "LD016", "backward-under-no-grad",
        "`backward()` inside `torch.no_grad()` / `torch.inference_mode()`",
        "compute the loss and call `backward()` outside the no_grad block",
        True, "ld016_backward_under_no_grad:BackwardUnderNoGrad",
    ),
    RuleInfo(
        "LD017", "forward-called-directly",
        "`model.forward(x)` instead of `model(x)`: hooks are skipped",
        "call the module itself: `model(x)`",
        True, "ld017_forward_called_directly:ForwardCalledDirectly",
    ),
    RuleInfo(
        "LD018", "functional-dropout-ignores-mode",
        "`F.dropout` in `forward` without `training=self.training`: dropout stays on in eval",
        "pass `training=self.training` (or use an `nn.Dropout` module)",
        True, "ld018_functional_dropout_ignores_mode:FunctionalDropoutIgnoresMode",
    ),
    RuleInfo(
        "LD019", "unweighted-epoch-mean",
        "Epoch loss as the plain mean of batch means while the last batch can be shorter",
        "sum `loss.item() * len(batch)` and divide by the number of samples",
        False, "ld019_unweighted_epoch_mean:UnweightedEpochMean",
    ),
    RuleInfo(
        "LD100", "unused-noqa",
        "A `# noqa: LD...` comment whose codes are not reported on its line",
        "remove the code from the `# noqa` comment",
        False, "ld100_unused_noqa:UnusedNoqa",
    ),
)
BY_CODE = {info.code: info for info in CATALOG}
