"""What made a tensor: its autograd node, seen through operations that only move values
(views, reshapes, copies), and a value test for when there is no graph (under ``no_grad``)."""

from __future__ import annotations

import torch

# Nodes that keep every value as it was: a softmax reshaped is still a softmax.
VALUE_PRESERVING = frozenset({
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "PermuteBackward0",
    "TransposeBackward0", "TransposeBackward1", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
    "UnsqueezeBackward0", "CloneBackward0", "ToCopyBackward0", "ExpandBackward0", "SliceBackward0",
    "SelectBackward0", "IndexBackward0", "AliasBackward0",
})
MAX_DEPTH = 8
SOFTMAX = ("SoftmaxBackward0",)
SIGMOID = ("SigmoidBackward0",)
TOLERANCE = 1e-3


def made_by(tensor: torch.Tensor, operations: tuple) -> bool:
    """Was ``tensor`` computed by one of ``operations`` (autograd node names), up to views?"""
    node = getattr(tensor, "grad_fn", None)
    for _ in range(MAX_DEPTH):
        if node is None:
            return False
        name = node.name()
        if name in operations:
            return True
        if name not in VALUE_PRESERVING or not node.next_functions:
            return False
        node = node.next_functions[0][0]
    return False


def class_dimension(tensor: torch.Tensor) -> int:
    """The class dimension of a classification loss's input: 0 unbatched, else 1."""
    return 0 if tensor.dim() == 1 else 1


def is_distribution(tensor: torch.Tensor) -> bool:
    """Non-negative along the class dimension and summing to 1 there, in every row: what a
    softmax returns, and what logits or log-probabilities practically never are."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dim() == 0:
        return False
    dim = class_dimension(tensor)
    if tensor.shape[dim] < 2 or tensor.numel() == 0:
        return False
    values = tensor.detach()
    return bool((values.min() >= 0) & ((values.sum(dim) - 1).abs().max() < TOLERANCE))
