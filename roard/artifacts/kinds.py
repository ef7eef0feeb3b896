"""The kinds of file a run uses (what roard.artifacts.classify decides), as plain names
that clients can import without the classifier and its configuration."""

SYSTEM = "system"
PACKAGE = "package"
CODE = "code"
ARTIFACT = "artifact"
# The kinds a user's own files have: compared by `diff`, kept longest in the spool.
USER_KINDS = frozenset({ARTIFACT, CODE})
# The kind of a dataset's own row in the registry: a directory of artifacts as one
# (roard.artifacts.datasets); never a path's classification.
DATASET = "dataset"
# What lineage walks follow: a run's own files and its datasets.
LINEAGE_KINDS = USER_KINDS | {DATASET}
