"""Scheduled jobs (the on-call incident reconcile) and their run history."""
