"""Lineage records: the internal-to-protobuf conversion."""
