-- Runs started by `rosterflow serve` carry the scheduled time they are for. However many
-- processes share the schedule, one run per pipeline and time is applied or held (a failed one
-- may be retried).
ALTER TABLE sync_runs ADD COLUMN scheduled_for TEXT;
CREATE UNIQUE INDEX sync_runs_one_per_time ON sync_runs(pipeline, scheduled_for)
    WHERE scheduled_for IS NOT NULL AND status <> 'failed';

-- Who asked for each run and who approved or discarded it: `schedule`, `console:<name>` or
-- `cli:<user>`.
ALTER TABLE sync_runs ADD COLUMN requested_by TEXT;
ALTER TABLE sync_runs ADD COLUMN decided_by TEXT;
