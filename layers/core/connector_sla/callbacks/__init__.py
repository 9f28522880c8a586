"""On-call callbacks: signature schemes, provider mappings, and the one entry point that records a callback.

``recorder.CallbackRecorder.record(intake.CallbackIntake) -> intake.CallbackOutcome`` is shared by the webhook and
the reconcile job. Nothing is imported here, so a reader of the callback history (the alerts API) does not load the
recorder, and the callback function's import path stays free of pydantic (its cold start depends on it).
"""
