"""The control plane: roarctl talks to the daemon over a Unix socket (gRPC)."""
