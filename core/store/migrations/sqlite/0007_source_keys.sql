-- no-transaction
-- Records are keyed by their source's id within their district, so that any source can feed a
-- district: a Clever id (unique everywhere) or a OneRoster sourcedId (unique only within one
-- district's feed). `clever_id` becomes `source_id`, unique per district; the district names
-- its source (`source_kind`, `source_id`) apart from its own `key`, which names its lock files
-- and export partitions and stays when its source changes. Rows the sync manages are
-- `managed_by = 'sis'` whatever their source. Every row and row id is kept.
--
-- SQLite cannot drop a column's UNIQUE constraint: each table is rebuilt with foreign keys off,
-- in one transaction (https://www.sqlite.org/lang_altertable.html#otheralter).
PRAGMA foreign_keys = OFF;
BEGIN;

ALTER TABLE districts RENAME COLUMN clever_id TO key;
ALTER TABLE districts ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'clever'
    CHECK (source_kind IN ('clever', 'oneroster'));
ALTER TABLE districts ADD COLUMN source_id TEXT;
UPDATE districts SET source_id = key;

CREATE TABLE schools_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT NOT NULL,
    sis_id          TEXT,
    name            TEXT NOT NULL,
    school_number   TEXT,
    state_id        TEXT,
    low_grade       TEXT,
    high_grade      TEXT,
    synthesized     BOOLEAN NOT NULL DEFAULT FALSE,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO schools_keyed (id, district_id, source_id, sis_id, name, school_number, state_id, low_grade, high_grade, synthesized, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, sis_id, name, school_number, state_id, low_grade, high_grade, synthesized, archived_at, archived_reason, created_at, updated_at, created_run FROM schools;
DROP TABLE schools;
ALTER TABLE schools_keyed RENAME TO schools;

CREATE TABLE terms_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT NOT NULL,
    name            TEXT,
    start_date      TEXT,
    end_date        TEXT,
    synthesized     BOOLEAN NOT NULL DEFAULT FALSE,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO terms_keyed (id, district_id, source_id, name, start_date, end_date, synthesized, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, name, start_date, end_date, synthesized, archived_at, archived_reason, created_at, updated_at, created_run FROM terms;
DROP TABLE terms;
ALTER TABLE terms_keyed RENAME TO terms;

CREATE TABLE courses_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT NOT NULL,
    name            TEXT,
    number          TEXT,
    synthesized     BOOLEAN NOT NULL DEFAULT FALSE,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO courses_keyed (id, district_id, source_id, name, number, synthesized, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, name, number, synthesized, archived_at, archived_reason, created_at, updated_at, created_run FROM courses;
DROP TABLE courses;
ALTER TABLE courses_keyed RENAME TO courses;

CREATE TABLE teachers_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT,
    sis_id          TEXT,
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    title           TEXT,
    teacher_number  TEXT,
    state_id        TEXT,
    school_id       INTEGER REFERENCES schools(id),
    managed_by      TEXT NOT NULL DEFAULT 'sis' CHECK (managed_by IN ('sis', 'manual')),
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO teachers_keyed (id, district_id, source_id, sis_id, email, first_name, middle_name, last_name, title, teacher_number, state_id, school_id, managed_by, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, sis_id, email, first_name, middle_name, last_name, title, teacher_number, state_id, school_id, CASE managed_by WHEN 'clever' THEN 'sis' ELSE managed_by END, archived_at, archived_reason, created_at, updated_at, created_run FROM teachers;
DROP TABLE teachers;
ALTER TABLE teachers_keyed RENAME TO teachers;
CREATE INDEX teachers_district ON teachers(district_id);
CREATE INDEX teachers_sis_id ON teachers(district_id, sis_id);

CREATE TABLE students_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT,
    sis_id          TEXT,
    state_id        TEXT,
    student_number  TEXT,
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    grade           TEXT,
    school_id       INTEGER REFERENCES schools(id),
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO students_keyed (id, district_id, source_id, sis_id, state_id, student_number, email, first_name, middle_name, last_name, grade, school_id, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, sis_id, state_id, student_number, email, first_name, middle_name, last_name, grade, school_id, archived_at, archived_reason, created_at, updated_at, created_run FROM students;
DROP TABLE students;
ALTER TABLE students_keyed RENAME TO students;
CREATE INDEX students_district ON students(district_id);
CREATE INDEX students_sis_id ON students(district_id, sis_id);

CREATE TABLE admins_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT,
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    title           TEXT,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO admins_keyed (id, district_id, source_id, email, first_name, middle_name, last_name, title, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, email, first_name, middle_name, last_name, title, archived_at, archived_reason, created_at, updated_at, created_run FROM admins;
DROP TABLE admins;
ALTER TABLE admins_keyed RENAME TO admins;

CREATE TABLE classes_keyed (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    source_id       TEXT,
    sis_id          TEXT,
    school_id       INTEGER REFERENCES schools(id),
    name            TEXT NOT NULL,
    subject         TEXT,
    grade           TEXT,
    period          TEXT,
    section_number  TEXT,
    term            TEXT,
    term_id         INTEGER REFERENCES terms(id),
    course_id       INTEGER REFERENCES courses(id),
    managed_by      TEXT NOT NULL DEFAULT 'sis' CHECK (managed_by IN ('sis', 'manual')),
    source          TEXT NOT NULL DEFAULT 'sis',
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_run     INTEGER,
    UNIQUE (district_id, source_id)
);
INSERT INTO classes_keyed (id, district_id, source_id, sis_id, school_id, name, subject, grade, period, section_number, term, term_id, course_id, managed_by, source, archived_at, archived_reason, created_at, updated_at, created_run)
SELECT id, district_id, clever_id, sis_id, school_id, name, subject, grade, period, section_number, term, term_id, course_id, CASE managed_by WHEN 'clever' THEN 'sis' ELSE managed_by END, source, archived_at, archived_reason, created_at, updated_at, created_run FROM classes;
DROP TABLE classes;
ALTER TABLE classes_keyed RENAME TO classes;
CREATE INDEX classes_district ON classes(district_id);

ALTER TABLE sync_changes RENAME COLUMN clever_id TO source_id;
ALTER TABLE sync_decisions RENAME COLUMN clever_id TO source_id;
ALTER TABLE quarantine RENAME COLUMN clever_id TO source_id;
-- Where the source sent a quarantined record, when that says more than its id (a file and line).
ALTER TABLE quarantine ADD COLUMN origin TEXT;

COMMIT;
PRAGMA foreign_keys = ON;
