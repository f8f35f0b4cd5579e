-- Snapshots of the read projection, as in SQLite (migrations/sqlite/0007_snapshots.sql).
CREATE TABLE snapshots (
    position       BIGINT PRIMARY KEY,
    tree_size      BIGINT NOT NULL,
    tree_root      BYTEA  NOT NULL,
    users          BIGINT NOT NULL,
    sessions       BIGINT NOT NULL,
    body_digest    BYTEA  NOT NULL,
    authenticator  BYTEA  NOT NULL,
    body           BYTEA  NOT NULL,
    made_at        TEXT   NOT NULL
);
