"""The plain baseline for benches/sync_scale.rs: the simplest honest Clever-to-SQLite sync, with
nothing but the standard library, to compare rosterflow's speed with.

    python3 plain_sync.py BASE_URL TOKEN DB_PATH [LIMIT]

It pages every Data API collection (`/v3.0/<collection>?limit=LIMIT`, then each `next` link) with
the bearer token, and in one transaction upserts districts, schools, terms, courses, sections and
users into a schema of its own, replaces each section's student and teacher memberships, and
deletes what the source no longer has. No history, no plan, no safety checks. A 429 waits for
`X-RateLimit-Reset`; any other error stops the run (exit 1).
"""

import json
import sqlite3
import sys
import time
import urllib.error
import urllib.request

COLLECTIONS = ["districts", "schools", "terms", "courses", "sections", "users"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS districts (id TEXT PRIMARY KEY, name TEXT, seen INTEGER);
CREATE TABLE IF NOT EXISTS schools (id TEXT PRIMARY KEY, name TEXT, sis_id TEXT, seen INTEGER);
CREATE TABLE IF NOT EXISTS terms (id TEXT PRIMARY KEY, name TEXT, start_date TEXT,
    end_date TEXT, seen INTEGER);
CREATE TABLE IF NOT EXISTS courses (id TEXT PRIMARY KEY, name TEXT, number TEXT, seen INTEGER);
CREATE TABLE IF NOT EXISTS sections (id TEXT PRIMARY KEY, school TEXT, name TEXT, subject TEXT,
    grade TEXT, term TEXT, course TEXT, seen INTEGER);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, is_student INTEGER, is_teacher INTEGER,
    first_name TEXT, last_name TEXT, email TEXT, sis_id TEXT, grade TEXT, school TEXT,
    seen INTEGER);
CREATE TABLE IF NOT EXISTS section_students (section_id TEXT, user_id TEXT,
    PRIMARY KEY (section_id, user_id));
CREATE TABLE IF NOT EXISTS section_teachers (section_id TEXT, user_id TEXT,
    PRIMARY KEY (section_id, user_id));
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, finished REAL);
"""


def pages(base_url, token, collection, limit):
    """Yields each page's records (the inner objects) of one collection."""
    path = f"/v3.0/{collection}?limit={limit}"
    while path:
        request = urllib.request.Request(
            base_url + path, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                page = json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            reset = float(error.headers.get("X-RateLimit-Reset", time.time() + 1))
            time.sleep(max(reset - time.time(), 0.1))
            continue
        yield [item["data"] for item in page["data"]]
        path = next((l["uri"] for l in page["links"] if l["rel"] == "next"), None)


def upsert(db, table, columns, rows):
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    db.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}",
        rows,
    )


def sync(base_url, token, db, limit):
    run = db.execute("INSERT INTO runs (finished) VALUES (NULL)").lastrowid
    for collection in COLLECTIONS:
        for records in pages(base_url, token, collection, limit):
            store(db, collection, records, run)
    for table in ["districts", "schools", "terms", "courses", "sections", "users"]:
        db.execute(f"DELETE FROM {table} WHERE seen <> ?", (run,))
    for table in ["section_students", "section_teachers"]:
        db.execute(
            f"DELETE FROM {table} WHERE section_id NOT IN (SELECT id FROM sections)"
        )
    db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run))


def store(db, collection, records, run):
    if collection == "districts":
        upsert(db, "districts", ["id", "name", "seen"],
               [(r["id"], r.get("name"), run) for r in records])
    elif collection == "schools":
        upsert(db, "schools", ["id", "name", "sis_id", "seen"],
               [(r["id"], r.get("name"), r.get("sis_id"), run) for r in records])
    elif collection == "terms":
        upsert(db, "terms", ["id", "name", "start_date", "end_date", "seen"],
               [(r["id"], r.get("name"), r.get("start_date"), r.get("end_date"), run)
                for r in records])
    elif collection == "courses":
        upsert(db, "courses", ["id", "name", "number", "seen"],
               [(r["id"], r.get("name"), r.get("number"), run) for r in records])
    elif collection == "sections":
        upsert(db, "sections",
               ["id", "school", "name", "subject", "grade", "term", "course", "seen"],
               [(r["id"], r.get("school"), r.get("name"), r.get("subject"), r.get("grade"),
                 r.get("term_id"), r.get("course"), run) for r in records])
        for table, key in [("section_students", "students"), ("section_teachers", "teachers")]:
            db.executemany(f"DELETE FROM {table} WHERE section_id = ?",
                           [(r["id"],) for r in records])
            db.executemany(
                f"INSERT OR IGNORE INTO {table} (section_id, user_id) VALUES (?, ?)",
                [(r["id"], member) for r in records for member in r.get(key) or []],
            )
    elif collection == "users":
        rows = []
        for r in records:
            roles = r.get("roles") or {}
            role = roles.get("student") or roles.get("teacher") or {}
            name = r.get("name") or {}
            rows.append((r["id"], "student" in roles, "teacher" in roles, name.get("first"),
                         name.get("last"), r.get("email"), role.get("sis_id"),
                         role.get("grade"), role.get("school"), run))
        upsert(db, "users",
               ["id", "is_student", "is_teacher", "first_name", "last_name", "email", "sis_id",
                "grade", "school", "seen"], rows)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    base_url, token, path = sys.argv[1:4]
    limit = int(sys.argv[4]) if len(sys.argv) == 5 else 10000
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    with db:
        sync(base_url.rstrip("/"), token, db, limit)
    db.close()


if __name__ == "__main__":
    main()
