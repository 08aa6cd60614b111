"""The `wfe` command: the composition root that wires the service, workers and engine."""
