"""Escalation: chains, channels, deliveries, the SLA state stream consumer and the escalation timers."""
