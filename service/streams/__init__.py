"""Live event streams: the process's dispatcher and its subscriptions."""
