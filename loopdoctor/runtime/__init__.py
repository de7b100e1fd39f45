"""The runtime half: hooks that report the first non-finite value while a loop runs."""

from loopdoctor.runtime.diagnosis import STAGES, Diagnosis, NonFiniteError
from loopdoctor.runtime.global_watch import GlobalWatch
from loopdoctor.runtime.watch import Watch, watch

__all__ = ["STAGES", "Diagnosis", "GlobalWatch", "NonFiniteError", "Watch", "watch"]
