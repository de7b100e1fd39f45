"""LD015: ``torch.load`` that unpickles arbitrary objects.

Which calls those are depends on the torch the code runs on (``torch-version`` in the settings,
or the project's declared requirement): torch 2.6 made ``weights_only=True`` the default, except
when a ``pickle_module`` is passed.
"""

from __future__ import annotations

from typing import Iterator, Optional

import libcst as cst

from loopdoctor.static.fixes import UNSAFE, AddKeyword, FixPlan, RemoveKeyword, ReplaceKeyword
from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel, call_args
from loopdoctor.static.rules.base import Rule, Violation

WEIGHTS_ONLY_DEFAULT = (2, 6)  # the torch release from which weights_only defaults to True
PICKLE_MODULE_POSITION = 2  # torch.load(f, map_location, pickle_module, *, weights_only, ...)


class TorchLoadWithoutWeightsOnly(Rule):
    code = "LD015"
    name = "torch-load-without-weights-only"
    summary = "`torch.load` without `weights_only=True`: an untrusted checkpoint can run code"
    fix_hint = "pass `weights_only=True` (and load plain tensors and containers only)"
    required_tokens = (("torch.load", "import load"),)

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        safe_default = semantic.settings.torch_at_least(*WEIGHTS_ONLY_DEFAULT)
        for site in semantic.iter_calls():
            if site.callee not in ("torch.load", "torch.serialization.load") or any(a.star for a in site.node.args):
                continue
            violation = self._judge(semantic, site.node, safe_default)
            if violation is not None:
                yield violation

    def _judge(self, semantic: SemanticModel, call: cst.Call, safe_default: bool) -> Optional[Violation]:
        positional, keywords = call_args(call)
        weights_only = keywords.get("weights_only")
        pickle_module = keywords.get("pickle_module", positional[PICKLE_MODULE_POSITION] if len(positional) > PICKLE_MODULE_POSITION else None)
        if pickle_module is not None and not _is_none(pickle_module):
            if weights_only is not None:
                return None  # an explicit choice (and True with a pickle module raises at once)
            return Violation(
                call,
                "`torch.load` with a custom `pickle_module` unpickles arbitrary objects (every torch "
                "version; `weights_only=True` cannot be combined with it): loading an untrusted "
                "checkpoint can execute code",
                _drop_stdlib_pickle(semantic, call, keywords) if safe_default else None,
            )
        if weights_only is None:
            return None if safe_default else self._missing(call)
        if safe_default and _is_false(weights_only):
            return Violation(
                call,
                "`weights_only=False` turns off the safe default of torch >= 2.6: `torch.load` "
                "unpickles arbitrary objects, and loading an untrusted checkpoint can execute code",
                FixPlan(UNSAFE, "pass `weights_only=True`", (ReplaceKeyword(call, "weights_only", "True"),)),
            )
        return None  # an explicit choice is the author's to make where the default is unsafe

    def _missing(self, call: cst.Call) -> Violation:
        return Violation(
            call,
            "`torch.load` unpickles arbitrary objects unless `weights_only=True`: loading an "
            "untrusted checkpoint can execute code (torch < 2.6 defaults to False)",
            FixPlan(UNSAFE, "pass `weights_only=True`", (AddKeyword(call, "weights_only", "True"),)),
        )


def _drop_stdlib_pickle(semantic: SemanticModel, call: cst.Call, keywords: dict) -> Optional[FixPlan]:
    """``pickle_module=pickle`` names the module torch uses anyway; without it the safe default
    of torch >= 2.6 applies again. Unsafe: a checkpoint of arbitrary objects no longer loads."""
    module = keywords.get("pickle_module")
    if module is None or semantic.resolve(module) != "pickle":
        return None
    return FixPlan(UNSAFE, "drop `pickle_module=pickle`: torch's safe default applies again", (RemoveKeyword(call, "pickle_module"),))


def _is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"
