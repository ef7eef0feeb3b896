"""Command-line entry points: roard (daemon) and roarctl (control)."""
