"""The runtime half: hooks that report loop mistakes and the first non-finite value while a loop runs."""

from loopdoctor.runtime.diagnosis import STAGES, Diagnosis, NonFiniteError
from loopdoctor.runtime.findings import LoopFinding
from loopdoctor.runtime.global_watch import GlobalWatch
from loopdoctor.runtime.recorder import LoopWarning
from loopdoctor.runtime.watch import Watch, watch

__all__ = ["STAGES", "Diagnosis", "GlobalWatch", "LoopFinding", "LoopWarning", "NonFiniteError", "Watch", "watch"]
