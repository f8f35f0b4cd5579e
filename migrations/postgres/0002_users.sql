-- Users: an ordinary table, as Strapi's up_users (see migrations/sqlite/0002_users.sql).
CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id    TEXT    NOT NULL UNIQUE,
    username       TEXT    NOT NULL UNIQUE,
    email          TEXT    NOT NULL UNIQUE,         -- stored lower-cased, as Strapi does
    password_hash  TEXT,                            -- argon2id PHC string
    provider       TEXT    NOT NULL DEFAULT 'local',
    confirmed      BOOLEAN NOT NULL DEFAULT TRUE,
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TEXT    NOT NULL,                -- ISO 8601 with milliseconds, as Strapi
    updated_at     TEXT    NOT NULL
);
