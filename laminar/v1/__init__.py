"""Generated gRPC and protobuf code for proto/laminar/v1/laminar.proto.

GENERATED CODE: everything in this package except this file is written by `make proto`; do not
edit it by hand. A test fails when it is stale.
"""
