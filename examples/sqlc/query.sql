-- name: CreateUser :one
INSERT INTO sqlc_example_users (name, email, email_bidx, phone, profile)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: GetUser :one
SELECT * FROM sqlc_example_users WHERE id = $1;

-- FindUsersByEmail matches every live index-key version: pass
-- blindindex.Index.Lookup(email).
-- name: FindUsersByEmail :many
SELECT * FROM sqlc_example_users WHERE email_bidx = ANY(@email_bidx::text[]) ORDER BY id;

-- name: UpdatePhone :exec
UPDATE sqlc_example_users SET phone = $2 WHERE id = $1;

-- name: RawUser :one
-- What the database holds, as text: for showing the ciphertext.
SELECT email::text AS email, email_bidx, COALESCE(phone::text, 'NULL') AS phone, profile::text AS profile
FROM sqlc_example_users WHERE id = $1;
