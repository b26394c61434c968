-- Incremental sync through Clever's Events API (core/src/extract/events.rs).
--
-- A district synced by events keeps its checkpoint: the newest event applied, and the raw
-- roster as of that event (every record as Clever sent it, zstd-compressed JSON), from which the
-- next run applies the events that followed. It is written in the transaction of the run that
-- brought it, so a run that fails or is killed leaves the previous checkpoint.
CREATE TABLE source_checkpoints (
    district_id     INTEGER PRIMARY KEY REFERENCES districts(id),
    run_id          INTEGER NOT NULL REFERENCES sync_runs(id),
    event_cursor    TEXT,
    roster          BLOB NOT NULL,
    full_sync_at    TEXT NOT NULL,
    saved_at        TEXT NOT NULL
);

-- How each run read its source (full or events), the event it ended at, and why.
ALTER TABLE sync_runs ADD COLUMN source_kind TEXT;
ALTER TABLE sync_runs ADD COLUMN event_cursor TEXT;
ALTER TABLE sync_runs ADD COLUMN source_note TEXT;
-- What the source sent that the roster does not load, as JSON counts: contacts, staff-only users,
-- records of other districts.
ALTER TABLE sync_runs ADD COLUMN skipped TEXT;
