-- Users: an ordinary table, as Strapi's up_users. Sessions are not here: they live in the
-- event log and its projections.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id    TEXT    NOT NULL UNIQUE,
    username       TEXT    NOT NULL UNIQUE,
    email          TEXT    NOT NULL UNIQUE,         -- stored lower-cased, as Strapi does
    password_hash  TEXT,                            -- argon2id PHC string
    provider       TEXT    NOT NULL DEFAULT 'local',
    confirmed      INTEGER NOT NULL DEFAULT 1,
    blocked        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
