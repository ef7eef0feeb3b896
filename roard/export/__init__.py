"""Export: the record stream from the spool to the collector."""
