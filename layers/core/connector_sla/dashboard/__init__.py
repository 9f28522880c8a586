"""The operations dashboard: one self-contained HTML page and the JSON it refreshes itself with."""
