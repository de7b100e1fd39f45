"""LD200: the first non-finite value (NaN or Inf) of the run, and where it entered.

Its detection is the watch's own pipeline (``watch.py``: on-device sentinels per stage, one host
read per step, an exact re-check when one trips), which reports a ``Diagnosis`` with this code.
This module declares the code's metadata, so that selection, the rule pages and the output
treat LD200 as they treat every other code.
"""

from __future__ import annotations

from loopdoctor.runtime.checks import Check


class NonFiniteValue(Check):
    code = "LD200"
    name = "non-finite-value"
    summary = "The first NaN or Inf of the run: the input, activation, logit, loss, gradient or parameter it entered at, and the step"
    fix_hint = "fix the cause the diagnosis names at the stage where the value entered; later stages only inherit it"
