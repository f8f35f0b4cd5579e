-- Personal data, sealed (src/store/sealed.rs, body.rs, data_keys.rs).
--
-- Events written from now on are stored in `body`: the event's fields in a compact encoding,
-- with the personal ones (IP, user agent, device, names) sealed under a data key of the
-- stream's owner; their `payload` and `metadata` are empty. Older rows keep their JSON and
-- are read as before. The hash chain covers the body as stored.
ALTER TABLE events ADD COLUMN body BLOB;

-- One data key per owner (the stream, 'user-<id>') and period (months since January of year
-- 0; 0 for the names an account is known by), wrapped by PERSONAL_DATA_KEY, which is kept
-- outside the database. Deleting a key (forgetting a user, or retention) keeps the row with
-- `wrapped` NULL and the reason, so that readers can say why a field is erased and no new key
-- is made for a forgotten owner.
CREATE TABLE data_keys (
    owner      TEXT    NOT NULL,
    period     INTEGER NOT NULL,
    wrapped    BLOB,
    erased     TEXT,                            -- 'forgotten' or 'expired'
    erased_at  TEXT,                            -- RFC 3339, UTC
    PRIMARY KEY (owner, period)
) WITHOUT ROWID;
