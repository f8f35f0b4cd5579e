-- The ledger over the event log, as in SQLite (migrations/sqlite/0003_ledger.sql). One
-- instance at a time extends the tree (an advisory lock), over events below the catch-up
-- horizon only, so every instance sees the same tree.
CREATE TABLE ledger_tree (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    size           BIGINT  NOT NULL,
    last_position  BIGINT  NOT NULL,
    root           BYTEA   NOT NULL,
    frontier       BYTEA   NOT NULL
);

CREATE TABLE ledger_nodes (
    level  INTEGER NOT NULL,
    idx    BIGINT  NOT NULL,
    hash   BYTEA   NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE ledger_spans (
    first_leaf      BIGINT PRIMARY KEY,
    first_position  BIGINT NOT NULL UNIQUE,
    count           BIGINT NOT NULL
);

CREATE TABLE checkpoints (
    size      BIGINT PRIMARY KEY,
    note      TEXT   NOT NULL,
    made_at   TEXT   NOT NULL
);
