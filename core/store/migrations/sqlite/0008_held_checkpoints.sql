-- A held run keeps the source checkpoint its pull made (an events cursor, a OneRoster roster),
-- so that approving it moves the district's checkpoint along with its rows: a OneRoster delta is
-- sent once, and the next one must apply over the roster this one left.
CREATE TABLE held_checkpoints (
    run_id          INTEGER PRIMARY KEY REFERENCES sync_runs(id),
    event_cursor    TEXT,
    roster          BLOB NOT NULL,
    full_sync_at    TEXT NOT NULL,
    saved_at        TEXT NOT NULL
);
