-- The ledger over the event log (src/ledger): one RFC 9162 Merkle tree over every event in
-- position order, extended incrementally, and the signed checkpoints of its heads.

-- The tree as far as it has been extended: one row. `frontier` holds the roots of the perfect
-- subtrees that make up the first `size` leaves, largest first, so that an extension needs
-- neither a rescan of the log nor a read of `ledger_nodes`.
CREATE TABLE ledger_tree (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    size           INTEGER NOT NULL,            -- leaves (events) covered
    last_position  INTEGER NOT NULL,            -- the position of the last covered event
    root           BLOB    NOT NULL,
    frontier       BLOB    NOT NULL
);

-- The root of every complete, aligned subtree of 2^level leaves, level >= 8: with the
-- events' own hashes (the leaves), any inclusion or consistency proof reads one or two runs
-- of at most 256 leaves and about one node a level.
CREATE TABLE ledger_nodes (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,                    -- the subtree's first leaf >> level
    hash   BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Leaf numbers for positions: each row a run of consecutive positions taking consecutive
-- leaves. Positions have gaps only where a PostgreSQL transaction rolled back, so runs are
-- few.
CREATE TABLE ledger_spans (
    first_leaf      INTEGER PRIMARY KEY,
    first_position  INTEGER NOT NULL UNIQUE,
    count           INTEGER NOT NULL
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), one a tree size.
CREATE TABLE checkpoints (
    size      INTEGER PRIMARY KEY,
    note      TEXT    NOT NULL,
    made_at   TEXT    NOT NULL                  -- RFC 3339, UTC
);
