-- The one live code of each kind a user may hold (issue 19): a password reset's and an email
-- confirmation's. Only the code's SHA-256 is kept (the code is derived by the mailer from its
-- id with a key the database never sees); a new request replaces the old code, a use clears
-- it. Each change is explained by its event (PasswordResetRequested, PasswordReset,
-- EmailConfirmationRequested, EmailConfirmed) in the same transaction. Expiry: ISO 8601 with
-- milliseconds, UTC, as the other times of this table, so that text order is time order.
ALTER TABLE users ADD COLUMN reset_code_id TEXT;
ALTER TABLE users ADD COLUMN reset_code_digest TEXT;
ALTER TABLE users ADD COLUMN reset_code_expires_at TEXT;
ALTER TABLE users ADD COLUMN confirmation_code_id TEXT;
ALTER TABLE users ADD COLUMN confirmation_code_digest TEXT;
ALTER TABLE users ADD COLUMN confirmation_code_expires_at TEXT;
CREATE UNIQUE INDEX users_reset_code ON users (reset_code_digest);
CREATE UNIQUE INDEX users_confirmation_code ON users (confirmation_code_digest);
