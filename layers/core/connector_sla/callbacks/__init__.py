"""On-call callbacks: signature schemes, provider mappings, and the one entry point that records a callback.

``CallbackRecorder.record(CallbackIntake) -> CallbackOutcome`` is shared by the webhook and the reconcile job.
This package's import path stays free of pydantic: the callback function's cold start depends on it.
"""

from connector_sla.callbacks.intake import NORMALIZED_STATUSES, CallbackIntake, CallbackOutcome
from connector_sla.callbacks.recorder import CallbackContention, CallbackRecorder

__all__ = ["NORMALIZED_STATUSES", "CallbackContention", "CallbackIntake", "CallbackOutcome", "CallbackRecorder"]
