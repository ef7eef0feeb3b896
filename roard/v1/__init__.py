"""The wire protocol's generated modules (from proto/, by proto/generate.sh), and the
message size limit every roard gRPC channel shares."""

# Large enough for a full batch of records with long paths and argv; anything bigger is
# rejected by gRPC itself before it reaches the service.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
