-- The users table of the sqlc example. email, phone and profile hold
-- colcrypt's wire format (v<version>:<base64url>); email_bidx holds the
-- email's blind index (b<version>:<base64url>), the only way to find a user
-- by email, and the column that enforces one account per address.
CREATE TABLE IF NOT EXISTS sqlc_example_users (
  id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        TEXT NOT NULL,
  email       TEXT NOT NULL,
  email_bidx  TEXT NOT NULL UNIQUE,
  phone       TEXT,
  profile     TEXT NOT NULL,
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
