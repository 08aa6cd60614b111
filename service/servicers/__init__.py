"""gRPC servicers: translate between `wfe.v1` messages and the service's domain."""
