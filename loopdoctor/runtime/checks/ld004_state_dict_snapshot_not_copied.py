"""LD004 at run time: ``load_state_dict`` of a "snapshot" that is the live weights themselves.

``state_dict()`` returns references to the parameters, not copies. A snapshot kept without
``copy.deepcopy`` (or ``.clone()``) changes with every later update, so restoring it restores
nothing: its tensors share storage with the very parameters they are loaded into.
"""

from __future__ import annotations

import torch

from loopdoctor.runtime.checks import Check
from loopdoctor.runtime.findings import user_site

NAMES_SHOWN = 3


class SnapshotAliasesLiveWeights(Check):
    code = "LD004"

    def on_load_state_dict(self, module, state_dict) -> None:
        if not hasattr(state_dict, "items"):
            return
        own = module.state_dict(keep_vars=True)
        shared = [name for name, value in state_dict.items() if _same_storage(value, own.get(name))]
        if not shared:
            return
        names = ", ".join(f"`{name}`" for name in shared[:NAMES_SHOWN]) + (" ..." if len(shared) > NAMES_SHOWN else "")
        self.report(
            f"`load_state_dict` is given tensors that share storage with the live weights they are loaded into "
            f"({names}; {len(shared)} of {len(own)}): the snapshot was not copied, so it holds the current "
            "weights, not those of the moment it was taken",
            user_site(),
        )


def _same_storage(value, live) -> bool:
    if not isinstance(value, torch.Tensor) or not isinstance(live, torch.Tensor) or not value.is_floating_point():
        return False
    if value.numel() == 0 or value.device != live.device:
        return False
    return value.untyped_storage().data_ptr() == live.untyped_storage().data_ptr()
