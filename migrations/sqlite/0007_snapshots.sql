-- Snapshots of the read projection (issue 20): every user's stream version and live sessions
-- as folded through log position `position`, so that a start folds only the events after it.
-- Not trusted: `authenticator` is an HMAC, under a key derived from the ledger key (which the
-- database never holds), of the format, `position`, the ledger's tree size and root whose
-- last leaf is the event at `position`, the counts and `body_digest`; a start checks it, the
-- body's digest and the log's own root at `tree_size`, and refolds the whole log otherwise.
-- The newest few are kept.
CREATE TABLE snapshots (
    position       INTEGER PRIMARY KEY,
    tree_size      INTEGER NOT NULL,
    tree_root      BLOB    NOT NULL,
    users          INTEGER NOT NULL,
    sessions       INTEGER NOT NULL,
    body_digest    BLOB    NOT NULL,
    authenticator  BLOB    NOT NULL,
    body           BLOB    NOT NULL,
    made_at        TEXT    NOT NULL              -- RFC 3339, UTC
);
