"""SLA evaluation: connector registry, signals, the state machine, SLA events and source failover."""
