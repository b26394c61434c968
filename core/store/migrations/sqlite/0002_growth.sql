-- Growth data: what students practise in Freckle and the level they reach in each domain.
-- Written by the Freckle app (and, for demos only, by `rosterflow demo seed-practice`, which marks
-- its rows `source = 'demo'`); read by the Parquet export. Rows stay attached to the student when
-- the student is archived or moves class: they are never deleted by a sync.

-- One practice session: a student working on one domain of one subject.
CREATE TABLE practice_sessions (
    id          INTEGER PRIMARY KEY,
    student_id  INTEGER NOT NULL REFERENCES students(id),
    subject     TEXT NOT NULL CHECK (subject IN ('math', 'ela')),
    domain      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    minutes     INTEGER NOT NULL CHECK (minutes >= 0),
    questions   INTEGER NOT NULL CHECK (questions >= 0),
    correct     INTEGER NOT NULL CHECK (correct >= 0 AND correct <= questions),
    -- the class the practice was assigned through, when known
    class_id    INTEGER REFERENCES classes(id),
    source      TEXT NOT NULL DEFAULT 'app' CHECK (source IN ('app', 'demo')),
    created_at  TEXT NOT NULL
);
-- The export reads a student's sessions per subject and domain in one ordered range scan: the
-- index covers every column it reads, so it never visits the table.
CREATE INDEX practice_sessions_export
    ON practice_sessions(student_id, subject, domain, started_at, minutes, questions, correct);

-- A student's level in one domain, as measured at a point in time (grade-level equivalent:
-- 0 is kindergarten, 3.5 is halfway through grade 3). A new row per measurement: the history is
-- what growth is computed from.
CREATE TABLE domain_levels (
    id          INTEGER PRIMARY KEY,
    student_id  INTEGER NOT NULL REFERENCES students(id),
    subject     TEXT NOT NULL CHECK (subject IN ('math', 'ela')),
    domain      TEXT NOT NULL,
    level       REAL NOT NULL,
    measured_at TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT 'app' CHECK (source IN ('app', 'demo'))
);
CREATE INDEX domain_levels_export
    ON domain_levels(student_id, subject, domain, measured_at, level);
