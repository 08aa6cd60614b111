"""The event log partitioned by week of `created_at` (PostgreSQL), so retention drops whole weeks.

A week, because retention runs from 7 to 365 days: a week-wide partition outlives the
longest retention by at most 7 days, while a year of history stays near 53 partitions.
Reads by id (the feed's `id > after AND id <= upto ORDER BY id`, lookups by execution or
workflow) cannot be pruned by time, so each probes every partition's index: daily
partitions would make that seven times the work. Partitions are named `events_pYYYYMMDD`
after the Monday (UTC) they start on; `events_default` takes any row whose week has no
partition yet, so an insert never fails when maintenance falls behind.

The primary key is (id, created_at), as a partitioned table's must include its key; ids
still come from `events_id_seq` (CACHE 1, owned by `events.id`), so they stay unique and
`wfe_event_horizon()` reads the same sequence. Inserts lock the parent, which is what that
function watches. Row-level security is on the parent, where every query of the service goes;
each partition has it enabled and forced with no policy and no grant, so neither the service
role nor the owner reads a partition directly.

`wfe_event_partitions_add(weeks_ahead)` and `wfe_event_partitions_drop(keep_days)` are the
maintenance the purge runs (`engine/retention.py`). They run as the owner, since only the
owner may change the table, under one transaction-level advisory lock. Only the service role
may call them (`persistence.migrate.SERVICE_FUNCTIONS`), and each refuses a caller without
INSERT (to add) or DELETE (to drop) on `events`: one that could not already delete every
tenant's events row by row. Either gives up when a lock is not granted within
`lock_timeout`, and the next purge does the rest.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from persistence.rls import enable_tenant_rls

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WEEKS_AHEAD = 4
COLUMNS = "id, tenant_id, type, workflow_id, execution_id, payload, created_at"
INDEXES = {
    "ix_events_tenant_id": "tenant_id",
    "ix_events_tenant_workflow": "tenant_id, workflow_id, id",
    "ix_events_tenant_execution": "tenant_id, execution_id, id",
}
FEED_POLICY = (
    "CREATE POLICY event_feed ON events FOR SELECT TO CURRENT_USER "
    "USING (current_setting('wfe.event_feed', true) = 'on')"
)
LOCK = "hashtextextended('wfe.event_partitions', 0)"

# One week's partition, if missing: made apart, filled with the rows of its week that fell
# into the default partition, then attached (which locks the parent only SHARE UPDATE
# EXCLUSIVE, not ACCESS EXCLUSIVE as CREATE TABLE ... PARTITION OF would). The owner reads
# the default partition only with FORCE lifted, inside this transaction: no one else can
# see it lifted, as the ALTER holds an ACCESS EXCLUSIVE lock on it until commit.
CREATE_PARTITION = f"""
CREATE FUNCTION wfe_event_partition_create(week timestamptz) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = public SET TimeZone = 'UTC' SET DateStyle = 'ISO'
AS $$
DECLARE
  lower_bound timestamptz := date_trunc('week', week);
  upper_bound timestamptz := lower_bound + interval '7 days';
  part text := 'events_p' || to_char(lower_bound, 'YYYYMMDD');
BEGIN
  IF to_regclass(part) IS NOT NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE events)', part);
  IF pg_relation_size('events_default') > 0 THEN
    ALTER TABLE events_default NO FORCE ROW LEVEL SECURITY;
    EXECUTE format(
      'WITH moved AS (DELETE FROM events_default WHERE created_at >= $1 AND created_at < $2 '
      'RETURNING {COLUMNS}) INSERT INTO %I ({COLUMNS}) SELECT {COLUMNS} FROM moved', part
    ) USING lower_bound, upper_bound;
    ALTER TABLE events_default FORCE ROW LEVEL SECURITY;
  END IF;
  EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
  EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', part);
  EXECUTE format(
    'ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
    part, lower_bound, upper_bound
  );
  RETURN part;
EXCEPTION WHEN duplicate_table THEN
  RETURN NULL;  -- made meanwhile, by a caller without the advisory lock
END $$
"""

# Weeks that have rows in the default partition (read as `CREATE_PARTITION` does).
DEFAULT_WEEKS = """
CREATE FUNCTION wfe_event_default_weeks() RETURNS SETOF timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = public SET TimeZone = 'UTC' AS $$
BEGIN
  IF pg_relation_size('events_default') = 0 THEN
    RETURN;
  END IF;
  ALTER TABLE events_default NO FORCE ROW LEVEL SECURITY;
  RETURN QUERY SELECT DISTINCT date_trunc('week', created_at) FROM events_default;
  ALTER TABLE events_default FORCE ROW LEVEL SECURITY;
END $$
"""

ADD = f"""
CREATE FUNCTION wfe_event_partitions_add(weeks_ahead integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public SET TimeZone = 'UTC' SET lock_timeout = '5s' AS $$
DECLARE
  weeks timestamptz[];
  week timestamptz;
  made text;
BEGIN
  IF NOT has_table_privilege(session_user, 'events', 'INSERT') THEN
    RAISE EXCEPTION 'permission denied to add partitions of events'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF weeks_ahead NOT BETWEEN 0 AND 52 THEN
    RAISE EXCEPTION 'weeks_ahead must be 0 to 52, not %', weeks_ahead
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  BEGIN
    PERFORM pg_advisory_xact_lock({LOCK});
    weeks := ARRAY(
      SELECT date_trunc('week', now()) + ahead * interval '7 days'
        FROM generate_series(0, weeks_ahead) ahead
      UNION SELECT * FROM wfe_event_default_weeks()
      ORDER BY 1
    );
  EXCEPTION WHEN lock_not_available THEN
    RETURN;
  END;
  FOREACH week IN ARRAY weeks LOOP
    BEGIN
      made := wfe_event_partition_create(week);
    EXCEPTION WHEN lock_not_available THEN
      RETURN;
    END;
    IF made IS NOT NULL THEN
      RETURN NEXT made;
    END IF;
  END LOOP;
END $$
"""

# A partition goes when its upper bound, read from the catalog, is `keep_days` or more ago.
# DROP TABLE detaches it as it drops it, holding ACCESS EXCLUSIVE locks on it, the parent and
# the default partition until commit: readers and writers of the log wait on them, briefly,
# as it is a catalog change. A DETACH first would take the same lock on the parent; DETACH
# ... CONCURRENTLY would not, but it cannot run in a transaction (so not in a function) nor
# beside a default partition.
DROP = f"""
CREATE FUNCTION wfe_event_partitions_drop(keep_days integer) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public SET TimeZone = 'UTC' SET lock_timeout = '2s' AS $$
DECLARE
  cutoff timestamptz := now() - make_interval(days => keep_days);
  doomed text[];
  part text;
BEGIN
  IF NOT has_table_privilege(session_user, 'events', 'DELETE') THEN
    RAISE EXCEPTION 'permission denied to drop partitions of events'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF keep_days < 1 THEN
    RAISE EXCEPTION 'keep_days must be at least 1, not %', keep_days
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  BEGIN
    PERFORM pg_advisory_xact_lock({LOCK});
  EXCEPTION WHEN lock_not_available THEN
    RETURN;
  END;
  doomed := ARRAY(
    SELECT c.relname
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid,
      LATERAL (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    'TO \\(''([^'']+)''\\)'))[1]::timestamptz) bound(upper_bound)
     WHERE i.inhparent = 'events'::regclass AND bound.upper_bound <= cutoff
     ORDER BY bound.upper_bound
  );
  FOREACH part IN ARRAY doomed LOOP
    BEGIN
      EXECUTE format('DROP TABLE %I', part);
    EXCEPTION WHEN lock_not_available THEN
      RETURN;
    END;
    RETURN NEXT part;
  END LOOP;
END $$
"""

FUNCTIONS = {
    "wfe_event_partition_create(timestamptz)": CREATE_PARTITION,
    "wfe_event_default_weeks()": DEFAULT_WEEKS,
    "wfe_event_partitions_add(integer)": ADD,
    "wfe_event_partitions_drop(integer)": DROP,
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps the one table; the purge deletes rows there
    _set_aside("events", "events_unpartitioned")
    _create_events("id, created_at", " PARTITION BY RANGE (created_at)")
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.execute("ALTER TABLE events_default ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE events_default FORCE ROW LEVEL SECURITY")
    for definition in FUNCTIONS.values():
        op.execute(definition)
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    # Weeks counted on UTC wall-clock time, which has no daylight saving to shift them.
    op.execute(
        "SELECT wfe_event_partition_create(week AT TIME ZONE 'UTC') FROM generate_series("
        " date_trunc('week', coalesce((SELECT min(created_at) FROM events_unpartitioned), now())"
        " AT TIME ZONE 'UTC'),"
        f" date_trunc('week', now() AT TIME ZONE 'UTC') + interval '{WEEKS_AHEAD * 7} days',"
        " interval '7 days') week"
    )
    _fill("events", "events_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    _set_aside("events", "events_partitioned")
    _create_events("id", "")
    _fill("events", "events_partitioned")


def _create_events(primary_key: str, partitioning: str) -> None:
    """The events table (partitioned or not), drawing its ids from the sequence it owns."""
    op.execute(
        "CREATE TABLE events ("
        " id bigint NOT NULL DEFAULT nextval('events_id_seq'),"
        " tenant_id varchar(63) NOT NULL,"
        " type varchar(64) NOT NULL,"
        " workflow_id varchar(64),"
        " execution_id varchar(64),"
        " payload json NOT NULL,"
        " created_at timestamptz NOT NULL,"
        f" CONSTRAINT pk_events PRIMARY KEY ({primary_key}),"
        " CONSTRAINT fk_events_tenant_id_tenants FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) ON DELETE CASCADE"
        f"){partitioning}"
    )
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")


def _set_aside(table: str, aside: str) -> None:
    """Rename `table` out of the way, its names freed and its rows readable by the owner."""
    op.execute(f"ALTER TABLE {table} RENAME TO {aside}")
    op.execute(f"ALTER TABLE {aside} RENAME CONSTRAINT pk_{table} TO pk_{aside}")
    for index in INDEXES:
        op.execute(f"DROP INDEX {index}")
    op.execute(f"ALTER TABLE {aside} NO FORCE ROW LEVEL SECURITY")
    # The sequence outlives the old table: the new one draws from it (and owns it) next.
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY NONE")


def _fill(table: str, aside: str) -> None:
    """Copy the rows, indexes, grants and policies of `aside` into `table`; drop `aside`."""
    op.execute(f"INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM {aside}")
    for index, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {index} ON {table} ({columns})")
    op.execute(
        "DO $$ DECLARE grant_ record; BEGIN"
        " FOR grant_ IN SELECT a.privilege_type,"
        "   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee"
        "   FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a"
        "   LEFT JOIN pg_roles r ON r.oid = a.grantee"
        f"  WHERE c.oid = '{aside}'::regclass AND a.grantee <> c.relowner"
        " LOOP"
        f"   EXECUTE format('GRANT %s ON {table} TO %s', grant_.privilege_type, grant_.grantee);"
        " END LOOP; END $$"
    )
    enable_tenant_rls(table)
    op.execute(FEED_POLICY)
    op.execute(f"DROP TABLE {aside}")
