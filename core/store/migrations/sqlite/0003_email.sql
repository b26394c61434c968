-- Welcome email delivery (core/src/email.rs, core/src/account.rs).
-- next_attempt_at: the earliest time a pending message may be tried (again); NULL means now.
-- A claim sets it before sending, so an overlapping delivery pass leaves the row alone.
ALTER TABLE email_outbox ADD COLUMN next_attempt_at TEXT;

-- A password-set link is redeemed by looking its account up by the token's hash.
CREATE INDEX teacher_accounts_token ON teacher_accounts(password_token_hash);
