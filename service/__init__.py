"""The gRPC service: server, servicers, engine core and persistence."""
