"""What callers do with executions: start, read, list, cancel, retry and rerun them."""
