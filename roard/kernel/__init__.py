"""The kernel side: BTF offsets, header prep, feature probing, BPF load and decode."""
