-- Signing in with Clever (Instant Login) through `rosterflow serve`. Every secret a browser or
-- the Freckle app presents (a state, a code, a grant) is kept only as its SHA-256 hash.

-- Every sign-in and every refusal: who (the Clever user and district), as what, and why.
CREATE TABLE sign_ins (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    clever_user     TEXT,
    clever_district TEXT,
    district_id     INTEGER REFERENCES districts(id),
    role            TEXT,
    account_kind    TEXT CHECK (account_kind IN ('teacher', 'student', 'admin')),
    account_id      INTEGER,
    detail          TEXT
);
CREATE INDEX sign_ins_at ON sign_ins(at);

-- A login the service started: its `state`, also held by the browser's cookie; used once.
-- `app_state` is the Freckle app's own value for the login, handed back with its grant.
CREATE TABLE sign_in_states (
    state_hash      TEXT PRIMARY KEY,
    app_state       TEXT,
    expires_at      TEXT NOT NULL
);

-- Codes already exchanged at Clever: a browser may send one again, and it is refused here.
CREATE TABLE sign_in_codes (
    code_hash       TEXT PRIMARY KEY,
    expires_at      TEXT NOT NULL
);

-- A signed-in person handed to the Freckle app, which exchanges it once, server to server.
CREATE TABLE sign_in_grants (
    grant_hash      TEXT PRIMARY KEY,
    app_state       TEXT,
    sign_in_id      INTEGER NOT NULL REFERENCES sign_ins(id),
    expires_at      TEXT NOT NULL
);

-- Who is signed in to the admin console: the operator (with the admin token; every district) or
-- a district administrator (with Clever; their district only). Kept here, so that signing out,
-- or the operator, ends a session at once on every service of the database.
CREATE TABLE console_sessions (
    id              INTEGER PRIMARY KEY,
    session_hash    TEXT NOT NULL UNIQUE,
    user_name       TEXT NOT NULL,
    district_id     INTEGER REFERENCES districts(id),
    admin_id        INTEGER REFERENCES admins(id),
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
