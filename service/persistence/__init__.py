"""Persistence: ORM models, the database handle and tenant-scoped sessions."""
