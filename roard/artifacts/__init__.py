"""Files as lineage artifacts: classification and content hashes."""
