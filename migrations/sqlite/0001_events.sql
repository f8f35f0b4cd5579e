-- The event log: one row per event, every user's stream in one table.
-- `position` is the global order that projections fold by; (stream_id, stream_version) is the
-- optimistic-concurrency key: a second writer of the same version fails the unique index and
-- the store reports a typed conflict.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id       TEXT    NOT NULL,               -- 'user-<id>'
    stream_version  INTEGER NOT NULL,               -- 1, 2, 3 … within the stream
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,               -- JSON
    metadata        TEXT    NOT NULL,               -- JSON: request_id, ip, user_agent, actor
    recorded_at     TEXT    NOT NULL,               -- RFC 3339, UTC, microseconds
    prev_hash       BLOB    NOT NULL,               -- hash of the previous event of the stream (zeros for the first)
    hash            BLOB    NOT NULL,               -- SHA-256 chain, see src/store/chain.rs
    UNIQUE (stream_id, stream_version)
);
