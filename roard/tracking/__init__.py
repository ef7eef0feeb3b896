"""Processes, descriptors and runs: who did what, attributed to which run."""
