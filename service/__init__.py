"""The gRPC service: server, interceptors, servicers and the domain services behind them."""
