"""roard: record what tagged runs actually read and wrote, and register it under hashes."""

__version__ = "0.1.0"
