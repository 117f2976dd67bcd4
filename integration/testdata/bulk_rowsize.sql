-- What row size alone costs Postgres in a bulk load, without any crypto:
-- 100,000 rows shaped like BenchmarkBulkLoad's (an e-mail, a phone for 3
-- rows in 4), as plaintext and as values of the lengths encryption gives
-- (v1: + base64url of nonce, ciphertext and tag: 12 + 28 + 16 bytes for
-- the e-mail, 12 + 14 + 16 for the phone; b1: + 43 characters),
-- each loaded with and without a UNIQUE index, three rounds in rotating
-- order. Run with
--   psql 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' -f integration/testdata/bulk_rowsize.sql
\timing on
\set QUIET on
DROP TABLE IF EXISTS colcrypt_rs_src, colcrypt_rs_p1, colcrypt_rs_e1, colcrypt_rs_p0, colcrypt_rs_e0;
CREATE TABLE colcrypt_rs_src AS SELECT
  'Bench.User' || lpad(((i * 7919) % 100000)::text, 6, '0') || '@Example.com' AS email,
  CASE WHEN i % 4 <> 0 THEN '+1 555 ' || lpad(i::text, 7, '0') END AS phone,
  'v1:' || rtrim(translate(encode(sha256(i::text::bytea) || substr(sha512(('z' || i)::bytea), 1, 24), 'base64'), E'+/\n', '-_'), '=') AS eemail,
  'b1:' || rtrim(translate(encode(sha256(('x' || i)::bytea), 'base64'), '+/', '-_'), '=') AS bidx,
  CASE WHEN i % 4 <> 0 THEN 'v1:' || rtrim(translate(encode(sha256(i::text::bytea) || substr(sha256(('y' || i)::bytea), 1, 10), 'base64'), E'+/\n', '-_'), '=') END AS ephone
FROM generate_series(1, 100000) i;
\unset QUIET
SELECT round(avg(length(email))) AS email, round(avg(length(eemail))) AS encrypted_email, round(avg(length(bidx))) AS bidx FROM colcrypt_rs_src;
CREATE TABLE colcrypt_rs_p1 (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, phone text);
CREATE TABLE colcrypt_rs_e1 (id bigserial PRIMARY KEY, email text NOT NULL, email_bidx text NOT NULL UNIQUE, phone text);
CREATE TABLE colcrypt_rs_p0 (id bigserial PRIMARY KEY, email text NOT NULL, phone text);
CREATE TABLE colcrypt_rs_e0 (id bigserial PRIMARY KEY, email text NOT NULL, email_bidx text NOT NULL, phone text);
\echo round 1: plain+unique, encrypted+unique, plain, encrypted
INSERT INTO colcrypt_rs_p1 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_e1 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_p0 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_e0 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
TRUNCATE colcrypt_rs_p1, colcrypt_rs_e1, colcrypt_rs_p0, colcrypt_rs_e0;
CHECKPOINT;
\echo round 2: encrypted+unique, plain+unique, encrypted, plain
INSERT INTO colcrypt_rs_e1 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_p1 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_e0 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_p0 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
TRUNCATE colcrypt_rs_p1, colcrypt_rs_e1, colcrypt_rs_p0, colcrypt_rs_e0;
CHECKPOINT;
\echo round 3: plain+unique, encrypted+unique, plain, encrypted
INSERT INTO colcrypt_rs_p1 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_e1 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_p0 (email, phone) SELECT email, phone FROM colcrypt_rs_src;
INSERT INTO colcrypt_rs_e0 (email, email_bidx, phone) SELECT eemail, bidx, ephone FROM colcrypt_rs_src;
\set QUIET on
DROP TABLE colcrypt_rs_src, colcrypt_rs_p1, colcrypt_rs_e1, colcrypt_rs_p0, colcrypt_rs_e0;
