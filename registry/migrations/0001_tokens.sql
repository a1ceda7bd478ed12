-- API tokens, scoped to sites. Only a SHA-256 hex digest of each token is stored: tokens are
-- 32 random bytes (256 bits), so guessing one is infeasible however fast the hash is; slow
-- password hashes (bcrypt, argon2) exist for low-entropy human passwords, and a fast,
-- unsalted digest lets a request find its token with one indexed equality lookup.
CREATE TABLE IF NOT EXISTS api_tokens (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('admin', 'site')),
    sites text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    CHECK (role = 'admin' OR cardinality(sites) > 0)
);
