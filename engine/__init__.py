"""The execution engine: how executions start, advance step by step, retry, and end.

The engine runs in any process that has a database: Celery workers (`wfe worker`),
the periodic jobs (`wfe beat`), and the embedded `wfe dev`. PostgreSQL (or SQLite,
embedded) holds the truth; broker messages only say "look at this attempt now".
"""
