-- Records are keyed by their source's id within their district, so that any source can feed a
-- district: a Clever id (unique everywhere) or a OneRoster sourcedId (unique only within one
-- district's feed). `clever_id` becomes `source_id`, unique per district; the district names
-- its source (`source_kind`, `source_id`) apart from its own `key`, which names its lock files
-- and export partitions and stays when its source changes. Rows the sync manages are
-- `managed_by = 'sis'` whatever their source. Every row and row id is kept.
ALTER TABLE districts RENAME COLUMN clever_id TO key;
ALTER TABLE districts ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'clever'
    CHECK (source_kind IN ('clever', 'oneroster'));
ALTER TABLE districts ADD COLUMN source_id TEXT;
UPDATE districts SET source_id = key;

ALTER TABLE schools RENAME COLUMN clever_id TO source_id;
ALTER TABLE schools DROP CONSTRAINT schools_clever_id_key;
ALTER TABLE schools ADD CONSTRAINT schools_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE terms RENAME COLUMN clever_id TO source_id;
ALTER TABLE terms DROP CONSTRAINT terms_clever_id_key;
ALTER TABLE terms ADD CONSTRAINT terms_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE courses RENAME COLUMN clever_id TO source_id;
ALTER TABLE courses DROP CONSTRAINT courses_clever_id_key;
ALTER TABLE courses ADD CONSTRAINT courses_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE teachers RENAME COLUMN clever_id TO source_id;
ALTER TABLE teachers DROP CONSTRAINT teachers_clever_id_key;
ALTER TABLE teachers ADD CONSTRAINT teachers_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE students RENAME COLUMN clever_id TO source_id;
ALTER TABLE students DROP CONSTRAINT students_clever_id_key;
ALTER TABLE students ADD CONSTRAINT students_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE admins RENAME COLUMN clever_id TO source_id;
ALTER TABLE admins DROP CONSTRAINT admins_clever_id_key;
ALTER TABLE admins ADD CONSTRAINT admins_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE classes RENAME COLUMN clever_id TO source_id;
ALTER TABLE classes DROP CONSTRAINT classes_clever_id_key;
ALTER TABLE classes ADD CONSTRAINT classes_source_id_key UNIQUE (district_id, source_id);

ALTER TABLE teachers DROP CONSTRAINT teachers_managed_by_check;
UPDATE teachers SET managed_by = 'sis' WHERE managed_by = 'clever';
ALTER TABLE teachers ALTER COLUMN managed_by SET DEFAULT 'sis';
ALTER TABLE teachers ADD CONSTRAINT teachers_managed_by_check CHECK (managed_by IN ('sis', 'manual'));

ALTER TABLE classes DROP CONSTRAINT classes_managed_by_check;
UPDATE classes SET managed_by = 'sis' WHERE managed_by = 'clever';
ALTER TABLE classes ALTER COLUMN managed_by SET DEFAULT 'sis';
ALTER TABLE classes ADD CONSTRAINT classes_managed_by_check CHECK (managed_by IN ('sis', 'manual'));

ALTER TABLE sync_changes RENAME COLUMN clever_id TO source_id;
ALTER TABLE sync_decisions RENAME COLUMN clever_id TO source_id;
ALTER TABLE quarantine RENAME COLUMN clever_id TO source_id;
-- Where the source sent a quarantined record, when that says more than its id (a file and line).
ALTER TABLE quarantine ADD COLUMN origin TEXT;
