"""Dead-letter rows, the Replay Workbench (patch, preview, replay) and replay jobs."""
