"""What every other package stands on: errors, settings, the database handle, the
declarative base and the interceptor hook plumbing. It imports nothing of ours."""
