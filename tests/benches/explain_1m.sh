#!/usr/bin/env bash
# Measures `rosterflow explain` on a 1M-student district: 1M students, 40k classes, 6M
# memberships and 7M recorded changes, built straight into a Freckle DB with SQL (loading that
# many through a sync is a separate, much longer job), then timed for a student by SIS id and a
# class by Clever id.   usage: tests/benches/explain_1m.sh [path/to/rosterflow]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/rosterflow}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/big.toml" <<EOF
[pipeline]
name = "big"
district_id = "000000000000000000000001"

[source]
type = "clever_replay"
dir = "$PWD/pipelines/demo"

[load]
database = "sqlite://$dir/freckle.db"
EOF
"$bin" history "$dir/big.toml" >/dev/null # creates the schema
start=$(date +%s)
sqlite3 "$dir/freckle.db" <<'SQL'
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
INSERT INTO districts (id, key, name, created_at, updated_at)
VALUES (1, '000000000000000000000001', 'Big district', 't', 't');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
INSERT INTO schools (id, district_id, source_id, name, created_at, updated_at)
SELECT i, 1, printf('1%023x', i), 'School ' || i, 't', 't' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO students (id, district_id, source_id, sis_id, first_name, last_name, grade, school_id, created_at, updated_at)
SELECT i, 1, printf('2%023x', i), 'S' || i, 'First', 'Last', i % 13, i % 40 + 1, 't', 't' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO classes (id, district_id, source_id, sis_id, school_id, name, created_at, updated_at)
SELECT i, 1, printf('3%023x', i), 'C' || i, i % 40 + 1, 'Class ' || i, 't', 't' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000),
k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < 5)
INSERT INTO class_students (class_id, student_id, source, started_at)
SELECT (i * 7 + j * 1009) % 40000 + 1, i, 'sis', 't' FROM n, k;
INSERT INTO sync_runs (id, district_id, pipeline, status, started_at) VALUES (1, 1, 'big', 'committed', 't');
INSERT INTO sync_changes (run_id, entity, source_id, action, reason, author)
SELECT 1, 'student', source_id, 'create', 'new in source', 'sync' FROM students;
INSERT INTO sync_changes (run_id, entity, source_id, member_id, action, reason, author)
SELECT 1, 'class_student', c.source_id, s.source_id, 'start', 'in the section in source', 'sync'
FROM class_students m JOIN classes c ON c.id = m.class_id JOIN students s ON s.id = m.student_id;
ANALYZE;
SQL
echo "built the 1M-student DB in $(( $(date +%s) - start )) s"
for query in "student S500000" "student $(printf '2%023x' 777777)" "class C12345"; do
  t0=$(date +%s%N)
  "$bin" explain "$dir/big.toml" $query >/dev/null
  echo "explain $query: $(( ($(date +%s%N) - t0) / 1000000 )) ms (whole process)"
done
