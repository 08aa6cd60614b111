"""The event feed: what live streams read of the event log, across tenants, in id order.

Event ids come from a sequence, so a transaction that took id N may commit after one that
took N+1; a reader that went on past N+1 would never see N. `wfe_event_horizon()` tells a
reader how far it may read: it returns the last id handed out, then the transactions that
hold the lock every INSERT into `events` takes (RowExclusiveLock, from before the id is
drawn until the transaction ends). Read in that order, every transaction holding an id up
to that value has either ended, and its rows are visible to any later statement, or is in
the list. Once none of them holds the lock any more, every id up to the value is final:
committed and visible, or never to appear. Only the writers of this table count, so a long
transaction elsewhere on the cluster holds nothing up. The sequence hands out ids one at a
time (CACHE 1, set here): with a cache, a session could draw an id below the last value
long after it was read.

`wfe_event_feed(after, upto, tenants, limit)` reads events of every tenant, or of the
given ones, in that range. The service role sees no tenant's rows without a tenant set
(row-level security); this function runs as the owner, and the owner reads across tenants
only while `wfe.event_feed` is on, which this function sets for the query it runs (and which
would give the service role nothing: the policy names the owner alone).
So the one cross-tenant read of event data is this call, made by the server's dispatcher,
which hands each event only to subscribers of its tenant.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HORIZON = """
CREATE FUNCTION wfe_event_horizon(OUT last_id bigint, OUT writers text[])
LANGUAGE plpgsql VOLATILE SET search_path = public AS $$
BEGIN
  last_id := coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'id')), 0);
  SELECT coalesce(array_agg(DISTINCT l.virtualtransaction), '{}') INTO writers
    FROM pg_locks l
   WHERE l.locktype = 'relation'
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND l.relation = 'events'::regclass
     AND l.mode = 'RowExclusiveLock';
END $$
"""

FEED = """
CREATE FUNCTION wfe_event_feed(after_id bigint, upto_id bigint, tenant_ids text[], max_rows integer)
RETURNS TABLE (
  id bigint, tenant_id varchar, type varchar, workflow_id varchar, execution_id varchar,
  payload json, created_at timestamptz
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  PERFORM set_config('wfe.event_feed', 'on', true);
  RETURN QUERY
    SELECT e.id, e.tenant_id, e.type, e.workflow_id, e.execution_id, e.payload, e.created_at
      FROM events e
     WHERE e.id > after_id AND e.id <= upto_id
       AND (tenant_ids IS NULL OR e.tenant_id = ANY (tenant_ids))
     ORDER BY e.id
     LIMIT max_rows;
  PERFORM set_config('wfe.event_feed', '', true);
END $$
"""

FUNCTIONS = (
    "wfe_event_horizon()",
    "wfe_event_feed(bigint, bigint, text[], integer)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite serialises writers: ids commit in order, and there is one tenant wall
    op.execute("ALTER SEQUENCE events_id_seq CACHE 1")
    op.execute(
        "CREATE POLICY event_feed ON events FOR SELECT TO CURRENT_USER "
        "USING (current_setting('wfe.event_feed', true) = 'on')"
    )
    op.execute(HORIZON)
    op.execute(FEED)
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("DROP POLICY IF EXISTS event_feed ON events")
