//! The production install: `core/cli/dist/rosterflow.service` passes `systemd-analyze verify`
//! with the built binary in place of `/usr/local/bin/rosterflow`, names only flags `serve`
//! has, gives a stop timeout longer than the drain it configures, restarts on failure and reads
//! its secrets from an environment file.

use std::ffi::OsStr;
use std::process::{Command, Output};

use crate::util::{repo, rosterflow_bin};

const INSTALLED_BIN: &str = "/usr/local/bin/rosterflow";

/// The value of the last `key=value` line of a unit (later lines override earlier ones).
fn directive<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim())
        .next_back()
}

/// A systemd time span in seconds: `360`, `360s`, `6min` or `6min 30s`.
fn seconds(span: &str) -> u64 {
    span.split_whitespace()
        .map(|part| {
            let digits = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            let n: u64 = part[..digits]
                .parse()
                .unwrap_or_else(|_| panic!("a time span: {span:?}"));
            match &part[digits..] {
                "" | "s" | "sec" => n,
                "m" | "min" => n * 60,
                "h" => n * 3600,
                unit => panic!("an unexpected time unit {unit:?} in {span:?}"),
            }
        })
        .sum()
}

/// Runs `systemd-analyze`; its absence fails the test rather than skipping it.
fn systemd_analyze(args: &[&OsStr]) -> Output {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: apt-get install systemd (tests/run installs it)"
        ),
        Err(error) => panic!("run systemd-analyze: {error}"),
    }
}

#[test]
fn the_systemd_unit_verifies_and_outlasts_the_drain() {
    // Before the (slow) build, so a machine without it fails at once.
    systemd_analyze(&["--version".as_ref()]);
    let path = repo().join("core/cli/dist/rosterflow.service");
    let unit = std::fs::read_to_string(&path).expect("core/cli/dist/rosterflow.service");

    let exec_start = directive(&unit, "ExecStart").expect("an ExecStart line");
    assert!(
        exec_start.starts_with(&format!("{INSTALLED_BIN} serve ")),
        "ExecStart runs `{INSTALLED_BIN} serve`: {exec_start}"
    );
    let args: Vec<&str> = exec_start.split_whitespace().collect();
    let drain_secs: u64 = args
        .windows(2)
        .find(|pair| pair[0] == "--drain-secs")
        .map(|pair| pair[1].parse().expect("--drain-secs takes seconds"))
        .expect("ExecStart names --drain-secs, so the stop timeout can be checked against it");
    let timeout_stop = seconds(directive(&unit, "TimeoutStopSec").expect("TimeoutStopSec"));
    assert!(
        timeout_stop > drain_secs,
        "TimeoutStopSec ({timeout_stop} s) outlasts --drain-secs ({drain_secs} s)"
    );
    assert_eq!(directive(&unit, "Restart"), Some("on-failure"));
    assert!(
        directive(&unit, "EnvironmentFile").is_some_and(|file| !file.is_empty()),
        "the secrets come from an EnvironmentFile"
    );

    // Every flag ExecStart gives is one `rosterflow serve` has.
    let bin = rosterflow_bin();
    let help = Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .expect("run rosterflow serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|arg| arg.starts_with("--")) {
        let flag = flag.split('=').next().expect("a flag");
        assert!(
            help.contains(flag),
            "`rosterflow serve` has no {flag}:\n{help}"
        );
    }

    // systemd-analyze checks that ExecStart's binary exists, so the copy runs the built one.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("rosterflow.service");
    let bin = bin.to_str().expect("a UTF-8 binary path");
    let text = unit.replace(
        &format!("ExecStart={INSTALLED_BIN} "),
        &format!("ExecStart={bin} "),
    );
    std::fs::write(&copy, text).expect("write the unit's copy");
    let output = systemd_analyze(&["verify".as_ref(), copy.as_os_str()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify {} ({}):\n{stdout}{stderr}",
        copy.display(),
        output.status
    );
    // The host's own units may draw warnings; only the unit's own lines count.
    let about_unit: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|line| line.contains("rosterflow.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        about_unit.join("\n")
    );
}
