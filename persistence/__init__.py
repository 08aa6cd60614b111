"""The tables: ORM models, migrations and row-level security, on the foundation's base."""
