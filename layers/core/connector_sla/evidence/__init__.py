"""Tamper-evident records and the compliance evidence bundle."""
