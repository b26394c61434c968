-- History that costs nothing when nothing changes (core/src/store.rs).
--
-- Rows carry the runs that made them: a record the run that created it, a membership the runs
-- that started and ended it (with the rule or plugin that ended it). A first load of millions
-- of memberships writes no change row for each; sync_changes keeps what a row cannot say for
-- itself (updates with their columns, archives, restores, role changes).
ALTER TABLE districts ADD COLUMN created_run BIGINT;
ALTER TABLE schools ADD COLUMN created_run BIGINT;
ALTER TABLE terms ADD COLUMN created_run BIGINT;
ALTER TABLE courses ADD COLUMN created_run BIGINT;
ALTER TABLE teachers ADD COLUMN created_run BIGINT;
ALTER TABLE students ADD COLUMN created_run BIGINT;
ALTER TABLE admins ADD COLUMN created_run BIGINT;
ALTER TABLE classes ADD COLUMN created_run BIGINT;

ALTER TABLE class_teachers ADD COLUMN started_run BIGINT;
ALTER TABLE class_teachers ADD COLUMN ended_run BIGINT;
ALTER TABLE class_teachers ADD COLUMN ended_by TEXT;
ALTER TABLE class_students ADD COLUMN started_run BIGINT;
ALTER TABLE class_students ADD COLUMN ended_run BIGINT;
ALTER TABLE class_students ADD COLUMN ended_by TEXT;
CREATE INDEX class_teachers_ended_run ON class_teachers(ended_run) WHERE ended_run IS NOT NULL;
CREATE INDEX class_students_ended_run ON class_students(ended_run) WHERE ended_run IS NOT NULL;

-- Transform decisions are intervals too: a decision is written when a run first makes it and
-- ended when a run no longer does, so an unchanged run writes none. The open ones are what the
-- latest run decided.
ALTER TABLE sync_decisions ADD COLUMN district_id BIGINT REFERENCES districts(id);
ALTER TABLE sync_decisions ADD COLUMN ended_run BIGINT;
-- Earlier runs recorded every decision again each run: those of a district's last applied run
-- are in force, the others were in force for their run only.
UPDATE sync_decisions SET district_id = r.district_id FROM sync_runs r WHERE r.id = sync_decisions.run_id;
UPDATE sync_decisions SET ended_run = sync_decisions.run_id
FROM (SELECT district_id, MAX(id) AS last_run FROM sync_runs
      WHERE status IN ('committed', 'approved') GROUP BY district_id) latest
WHERE latest.district_id = sync_decisions.district_id AND sync_decisions.run_id <> latest.last_run;
CREATE INDEX sync_decisions_open ON sync_decisions(district_id) WHERE ended_run IS NULL;

-- A held run keeps the transformed roster it was planned from (zstd-compressed JSON) and the
-- run whose state it was planned against; approving it plans again from that roster against
-- the unchanged DB, which gives the same plan.
ALTER TABLE sync_runs ADD COLUMN based_on_run BIGINT;
ALTER TABLE sync_runs ADD COLUMN snapshot BYTEA;
