"""The collector: receives lineage records and answers queries about runs and artifacts."""
