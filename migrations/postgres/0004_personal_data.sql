-- Personal data, sealed, as in SQLite (migrations/sqlite/0004_personal_data.sql). A row with
-- a `body` has NULL `payload` and `metadata` here (JSON cannot be empty); readers see them
-- as empty text, as on SQLite.
ALTER TABLE events
    ADD COLUMN body BYTEA,
    ALTER COLUMN payload DROP NOT NULL,
    ALTER COLUMN metadata DROP NOT NULL;

CREATE TABLE data_keys (
    owner      TEXT   NOT NULL,
    period     BIGINT NOT NULL,
    wrapped    BYTEA,
    erased     TEXT,
    erased_at  TEXT,
    PRIMARY KEY (owner, period)
);
