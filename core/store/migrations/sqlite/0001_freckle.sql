-- The Freckle DB contract: the tables the Freckle app reads and rosterflow keeps in step.
-- Timestamps are UTC text, ISO 8601 with microseconds ('2026-11-30T00:00:00.000000Z'), so that
-- they sort as text and read the same on SQLite and PostgreSQL.

CREATE TABLE districts (
    id          INTEGER PRIMARY KEY,
    clever_id   TEXT NOT NULL UNIQUE,
    sis_id      TEXT,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE schools (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT NOT NULL UNIQUE,
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
    updated_at      TEXT NOT NULL
);

CREATE TABLE terms (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT NOT NULL UNIQUE,
    name            TEXT,
    start_date      TEXT,
    end_date        TEXT,
    synthesized     BOOLEAN NOT NULL DEFAULT FALSE,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE courses (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT NOT NULL UNIQUE,
    name            TEXT,
    number          TEXT,
    synthesized     BOOLEAN NOT NULL DEFAULT FALSE,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE teachers (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT UNIQUE,
    sis_id          TEXT,
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    title           TEXT,
    teacher_number  TEXT,
    state_id        TEXT,
    school_id       INTEGER REFERENCES schools(id),
    managed_by      TEXT NOT NULL DEFAULT 'clever' CHECK (managed_by IN ('clever', 'manual')),
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX teachers_district ON teachers(district_id);
CREATE INDEX teachers_sis_id ON teachers(district_id, sis_id);

CREATE TABLE students (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT UNIQUE,
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
    updated_at      TEXT NOT NULL
);
CREATE INDEX students_district ON students(district_id);
CREATE INDEX students_sis_id ON students(district_id, sis_id);

CREATE TABLE admins (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT UNIQUE,
    email           TEXT,
    first_name      TEXT,
    middle_name     TEXT,
    last_name       TEXT,
    title           TEXT,
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE classes (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    clever_id       TEXT UNIQUE,
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
    managed_by      TEXT NOT NULL DEFAULT 'clever' CHECK (managed_by IN ('clever', 'manual')),
    source          TEXT NOT NULL DEFAULT 'sis',
    archived_at     TEXT,
    archived_reason TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX classes_district ON classes(district_id);

-- Memberships are intervals: a row per stay, ended (never deleted) when the stay ends.
CREATE TABLE class_teachers (
    id              INTEGER PRIMARY KEY,
    class_id        INTEGER NOT NULL REFERENCES classes(id),
    teacher_id      INTEGER NOT NULL REFERENCES teachers(id),
    role            TEXT NOT NULL CHECK (role IN ('primary', 'co')),
    source          TEXT NOT NULL DEFAULT 'sis',
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    ended_reason    TEXT
);
CREATE INDEX class_teachers_class ON class_teachers(class_id);
CREATE INDEX class_teachers_teacher ON class_teachers(teacher_id);
CREATE UNIQUE INDEX class_teachers_open ON class_teachers(class_id, teacher_id) WHERE ended_at IS NULL;

CREATE TABLE class_students (
    id              INTEGER PRIMARY KEY,
    class_id        INTEGER NOT NULL REFERENCES classes(id),
    student_id      INTEGER NOT NULL REFERENCES students(id),
    source          TEXT NOT NULL DEFAULT 'sis',
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    ended_reason    TEXT
);
CREATE INDEX class_students_class ON class_students(class_id);
CREATE INDEX class_students_student ON class_students(student_id);
CREATE UNIQUE INDEX class_students_open ON class_students(class_id, student_id) WHERE ended_at IS NULL;

CREATE TABLE student_shares (
    id                  INTEGER PRIMARY KEY,
    student_id          INTEGER NOT NULL REFERENCES students(id),
    owner_teacher_id    INTEGER REFERENCES teachers(id),
    teacher_id          INTEGER NOT NULL REFERENCES teachers(id),
    created_at          TEXT NOT NULL,
    revoked_at          TEXT
);
CREATE INDEX student_shares_student ON student_shares(student_id);
CREATE UNIQUE INDEX student_shares_open ON student_shares(student_id, teacher_id) WHERE revoked_at IS NULL;

CREATE TABLE teacher_accounts (
    teacher_id              INTEGER PRIMARY KEY REFERENCES teachers(id),
    login_state             TEXT NOT NULL DEFAULT 'invited' CHECK (login_state IN ('invited', 'active', 'disabled')),
    password_token_hash     TEXT,
    password_token_expires_at TEXT,
    invited_at              TEXT,
    password_set_at         TEXT,
    created_at              TEXT NOT NULL
);

CREATE TABLE email_outbox (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER NOT NULL REFERENCES districts(id),
    run_id          INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    teacher_id      INTEGER REFERENCES teachers(id),
    recipient       TEXT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX email_outbox_pending ON email_outbox(status, district_id);
CREATE UNIQUE INDEX email_outbox_once ON email_outbox(kind, teacher_id);

CREATE TABLE sync_runs (
    id              INTEGER PRIMARY KEY,
    district_id     INTEGER REFERENCES districts(id),
    pipeline        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('committed', 'held', 'approved', 'discarded', 'failed')),
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    changes         INTEGER NOT NULL DEFAULT 0,
    quarantined     INTEGER NOT NULL DEFAULT 0,
    counts          TEXT NOT NULL DEFAULT '{}',
    plan            TEXT,
    error           TEXT
);
CREATE INDEX sync_runs_pipeline ON sync_runs(pipeline, id);

CREATE TABLE sync_changes (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES sync_runs(id),
    entity          TEXT NOT NULL,
    clever_id       TEXT,
    member_id       TEXT,
    action          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    author          TEXT NOT NULL,
    detail          TEXT
);
CREATE INDEX sync_changes_run ON sync_changes(run_id);
CREATE INDEX sync_changes_record ON sync_changes(clever_id);
CREATE INDEX sync_changes_member ON sync_changes(member_id);

-- What each transform dropped or created in a run, so `explain` can say why a record is absent.
CREATE TABLE sync_decisions (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES sync_runs(id),
    entity          TEXT NOT NULL,
    clever_id       TEXT NOT NULL,
    action          TEXT NOT NULL,
    author          TEXT NOT NULL,
    detail          TEXT NOT NULL
);
CREATE INDEX sync_decisions_record ON sync_decisions(clever_id);

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES sync_runs(id),
    kind            TEXT NOT NULL,
    clever_id       TEXT,
    reason          TEXT NOT NULL,
    suggested_fix   TEXT,
    record          TEXT NOT NULL
);
CREATE INDEX quarantine_run ON quarantine(run_id);
