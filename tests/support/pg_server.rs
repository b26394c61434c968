//! A PostgreSQL server of a test's own, which the test may stop and start again under a run:
//! made by `tests/pg.sh` (a throwaway cluster on 127.0.0.1, its role's password the tests'
//! canary, no fsync), stopped with `pg_ctl`, started again on the same data by `tests/pg.sh
//! restart`, and removed with the test.

use std::path::PathBuf;
use std::process::Command;

use crate::binary::repo;

/// A server on 127.0.0.1:`port`, its data kept across a stop and a start, removed on drop.
pub struct PgServer {
    port: u16,
    data: PathBuf,
    /// The server's URL as `tests/pg.sh` gives it (with the role's password, if it has one),
    /// less its database.
    base: String,
}

impl PgServer {
    /// Starts a server on the first of `ports` that is free, its data in a directory of its
    /// own (so that no other server is ever taken over), or takes over the one that a test
    /// that died left on that directory.
    pub fn start(ports: &[u16]) -> PgServer {
        for &port in ports {
            let data = std::env::temp_dir().join(format!("rosterflow-faults-pg-{port}"));
            let started = Command::new("bash")
                .arg(repo().join("tests/pg.sh"))
                .args(["start", &port.to_string()])
                .env("PGDATA_DIR", &data)
                .stderr(std::process::Stdio::null())
                .output()
                .expect("run tests/pg.sh");
            // `export DATABASE_URL=postgres://...@127.0.0.1:PORT/postgres`
            let url = String::from_utf8_lossy(&started.stdout)
                .lines()
                .find_map(|line| line.strip_prefix("export DATABASE_URL="))
                .map(str::to_owned);
            let server = PgServer {
                port,
                data,
                base: url
                    .as_deref()
                    .and_then(|url| url.rsplit_once('/'))
                    .map(|(base, _)| base.to_owned())
                    .unwrap_or_default(),
            };
            if started.status.success() && !server.base.is_empty() {
                return server;
            }
            // Another server holds the port: this one's data goes with `server`.
        }
        panic!("tests/pg.sh could start a server on none of the ports {ports:?}");
    }

    pub fn address(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Stops the server as an administrator would (`pg_ctl stop -m fast`): every session is
    /// ended and its open transaction rolled back. Returns once it has stopped.
    pub fn stop(&self) {
        self.pg_ctl(&format!("-D {} -m fast -w stop", self.data.display()));
    }

    /// Starts the stopped server again on its data (`tests/pg.sh restart`, with the options
    /// its `start` gives it). Returns once it accepts connections.
    pub fn start_again(&self) {
        let status = Command::new("bash")
            .arg(repo().join("tests/pg.sh"))
            .args(["restart", &self.port.to_string()])
            .env("PGDATA_DIR", &self.data)
            .status()
            .expect("run tests/pg.sh");
        assert!(status.success(), "tests/pg.sh restart {} failed", self.port);
    }

    /// Runs `pg_ctl ARGS` as the data's owner (`postgres` when the tests run as root).
    fn pg_ctl(&self, args: &str) {
        let command = format!("{}/pg_ctl {args} >/dev/null", bin_dir().display());
        let status = if is_root() {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &command])
                .status()
        } else {
            Command::new("sh").args(["-c", &command]).status()
        }
        .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl {args} failed");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/pg.sh"))
            .args(["stop", &self.port.to_string()])
            .env("PGDATA_DIR", &self.data)
            .status();
    }
}

/// Whether this process runs as root, by the owner of its own `/proc` entry.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The whole database at `url` (schema and rows) as `pg_dump` writes it, less what differs
/// between two dumps of the same data: the values of sequences (which no rollback takes back)
/// and the random key of newer `pg_dump`'s `\restrict` lines.
pub fn dump(url: &str) -> String {
    let output = Command::new(bin_dir().join("pg_dump"))
        .args(["--no-owner", "--no-privileges", "--dbname", url])
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a dump in UTF-8")
        .lines()
        .filter(|line| {
            !line.starts_with("SELECT pg_catalog.setval(")
                && !line.starts_with("\\restrict")
                && !line.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let version = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server (tests/pg.sh installs it)")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}
