"""Generated from rpc.proto by `make proto-etcd`: a wire-compatible subset of etcd's v3 API, for the bench."""
