//! The `rosterflow` binary, for the integration tests (a debug build) and the benchmarks (a
//! release build). It lives in another package, so cargo does not build it for this one by
//! itself: the first call builds it, once per process and profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variables cargo sets for a package's test or bench run (besides `CARGO_PKG_*`), none of
/// them meant for another build.
const PACKAGE_VARS: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// Which build of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `target/debug`, what `cargo test` builds.
    Debug,
    /// `target/release`, for measurements.
    Release,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_owned()
}

/// The `rosterflow` binary of `profile`, built on the first call (in `CARGO_TARGET_DIR`, or the
/// repository's `target/`).
pub fn rosterflow_bin(profile: Profile) -> PathBuf {
    static DEBUG: OnceLock<PathBuf> = OnceLock::new();
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    let (built, dir) = match profile {
        Profile::Debug => (&DEBUG, "debug"),
        Profile::Release => (&RELEASE, "release"),
    };
    built
        .get_or_init(|| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo.arg("build");
            // What cargo set for this package's test or bench: a build script that tracks one
            // (ring's, `CARGO_MANIFEST_DIR`) would otherwise see it change, and the binary be
            // rebuilt on every run, and again by the next plain `cargo build`.
            for (name, _) in std::env::vars_os() {
                let name_text = name.to_string_lossy();
                if name_text.starts_with("CARGO_PKG_") || PACKAGE_VARS.contains(&&*name_text) {
                    cargo.env_remove(&name);
                }
            }
            if profile == Profile::Release {
                cargo.arg("--release");
            }
            let status = cargo
                .args(["--quiet", "-p", "rosterflow", "--bin", "rosterflow"])
                .current_dir(repo())
                // The job engine's SQL is checked against the query data it ships, not against
                // whatever database `DATABASE_URL` names.
                .env("SQLX_OFFLINE", "true")
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "building the {dir} rosterflow binary failed"
            );
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join("target"))
                .join(dir)
                .join("rosterflow")
        })
        .clone()
}
