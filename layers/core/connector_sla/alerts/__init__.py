"""Notifications, deliveries and callback records: what escalation writes and callbacks and reconcile update."""
