"""What runs outside the gRPC service: the step workers and the built-in tools they call."""
