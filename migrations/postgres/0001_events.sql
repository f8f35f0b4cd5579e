-- The event log, as in SQLite (migrations/sqlite/0001_events.sql), for several instances
-- sharing one database.
--
-- `payload` and `metadata` are JSON, not JSONB: JSON keeps the text exactly as written, and
-- the hash chain covers that text.
-- `transaction_id` lets catch-up readers read only below the oldest transaction still in
-- flight (pg_snapshot_xmin), so an event that commits after a higher position is already
-- visible is never skipped.
CREATE TABLE events (
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  SMALLINT    NOT NULL,
    payload         JSON        NOT NULL,
    metadata        JSON        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    prev_hash       BYTEA       NOT NULL,
    hash            BYTEA       NOT NULL,
    transaction_id  XID8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version)
);

-- Wakes catch-up readers of other instances when events are committed.
CREATE FUNCTION notify_events() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tokenledger_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events();
