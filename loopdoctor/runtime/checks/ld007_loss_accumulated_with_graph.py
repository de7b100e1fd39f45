"""LD007 at run time: a loss, and with it its autograd graph, kept alive across steps.

Each loss that ``backward()`` runs on gets a token in its graph's root node (``grad_fn.metadata``);
the token lives exactly as long as that node. When the node is still alive ``KEPT_STEPS`` steps
later, something holds the graph: ``total += loss`` or ``losses.append(loss)`` without
``.item()`` / ``.detach()``, and every step's graph piles up behind it.
"""

from __future__ import annotations

import weakref
from collections import deque

import torch

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

KEPT_STEPS = 2  # the loss variable itself keeps a graph until it is rebound at the next step
TOKEN = "loopdoctor"


class _Token:
    __slots__ = ("__weakref__",)


class LossKeptWithGraph(Check):
    code = "LD007"

    def __init__(self, recorder):
        super().__init__(recorder)
        self._tokens: deque = deque()  # (weakref to a token, step, site), oldest first

    def on_backward(self, roots) -> None:
        if not self.state.sampled():
            return  # a graph kept every step is kept at a sampled one too
        site = None
        for root in roots:
            node = root.grad_fn if isinstance(root, torch.Tensor) and root.dim() == 0 else None
            if node is None or TOKEN in node.metadata:
                continue
            token = node.metadata[TOKEN] = _Token()
            site = site or user_site()
            self._tokens.append((weakref.ref(token), self.state.step, site))

    def on_pre_step(self, optimizer, closure: bool) -> None:
        step = self.state.step
        while self._tokens and self._tokens[0][1] <= step - KEPT_STEPS:
            token, made_at, site = self._tokens.popleft()
            if token() is not None:
                self.report(
                    f"the loss backpropagated at step {made_at} is still attached to its autograd graph {step - made_at} "
                    "steps later: something keeps it (`total += loss`, a list of losses) without `.item()` or "
                    "`.detach()`, so every step's graph stays in memory",
                    site, step=made_at,
                )
