"""LD012 at run time: NLL loss given probabilities instead of log-probabilities."""

from __future__ import annotations

from loopdoctor.runtime.checks.ld001_softmax_before_cross_entropy import SoftmaxIntoCrossEntropy


class SoftmaxIntoNllLoss(SoftmaxIntoCrossEntropy):
    code = "LD012"
    loss_kind = "nll_loss"
    loss_name = "nll_loss"
    expects = "log-probabilities (log_softmax): on probabilities the loss is no log-likelihood and can go below zero"
