//! A hostile plugin for the host's test suite. Its config picks the misdeed:
//!
//! | `mode` | what it does | what the host must say |
//! |---|---|---|
//! | `loop` | spins forever | time budget exceeded |
//! | `memory-bomb` | allocates until refused | memory cap exceeded |
//! | `panic` | panics | crashed, with the panic message |
//! | `oversized-output` | returns a 5M-member group (20 MB) | output cap exceeded |
//! | `dangling-ids` | drops a student that does not exist | invalid edit |
//! | `duplicate-keys` | makes two groups with one key | invalid edit |
//! | `drop-then-edit` | renames a section it dropped | invalid edit |
//! | `fatal` | returns a fatal error | reported a fatal error |
//! | `exit` | calls `exit(3)` | crashed (WASI 0.2 passes on only that it failed) |
//! | `sleep` | sleeps for a minute | crashed: plugins may not sleep |
//! | `log-spam` | logs 5000 lines, then returns nothing | keeps 1000 lines |
//! | `probe` | looks at the filesystem, environment and clock, reports what it saw as a fatal error | nothing granted |
//! | `random` | sets `ext.draw` on section 0 to bytes from `getrandom` and a `HashMap` key | the same bytes for the same input |
//! | `ok` | returns nothing | fine |

use std::hash::BuildHasher;

use rosterflow_plugin_sdk as sdk;
use sdk::{
    Attribute, Edit, Error, Group, Info, Plugin, SchoolIndex, SectionIndex, Snapshot, StudentIndex,
};

/// The plugin.
pub struct Evil;

/// Which misdeed to commit.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: String,
    /// Ignored: lets a test change the config without changing the mode.
    #[serde(default)]
    pub note: String,
}

impl Plugin for Evil {
    type Config = Config;

    fn info() -> Info {
        Info {
            name: "hostile-evil".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on purpose, as its config says".into(),
            ..Info::default()
        }
    }

    fn run(config: &Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
        match config.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("the evil plugin panics on purpose"),
            "oversized-output" => {
                let mut group = Group::new("huge", "Huge", SchoolIndex(0));
                group.students = vec![StudentIndex(0); 5_000_000];
                Ok(vec![Edit::CreateGroup(group)])
            }
            "dangling-ids" => Ok(vec![Edit::DropStudent(StudentIndex(
                snapshot.students.len() as u32 + 7,
            ))]),
            "duplicate-keys" => Ok(vec![
                Edit::CreateGroup(Group::new("twin", "Twin A", SchoolIndex(0))),
                Edit::CreateGroup(Group::new("twin", "Twin B", SchoolIndex(0))),
            ]),
            "drop-then-edit" => Ok(vec![
                Edit::DropSection(SectionIndex(0)),
                Edit::SetAttribute {
                    section: SectionIndex(0),
                    attribute: Attribute::Name("renamed".into()),
                },
            ]),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(60));
                Ok(Vec::new())
            }
            "fatal" => Err(Error::Fatal("the evil plugin gives up".into())),
            "exit" => std::process::exit(3),
            "log-spam" => {
                for n in 0..5000 {
                    sdk::log::info(&format!("line {n}"));
                }
                Ok(Vec::new())
            }
            "probe" => {
                let fs = match std::fs::read_dir("/") {
                    Ok(_) => "readable".to_string(),
                    Err(e) => format!("denied ({e})"),
                };
                let env = std::env::vars().count();
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(u64::MAX);
                Err(Error::Fatal(format!("fs={fs}; env={env}; clock={clock}")))
            }
            "random" => {
                // Where a plugin's randomness comes from: `getrandom` (under `rand`) reads WASI
                // random; the standard library keys each `HashMap` from WASI too.
                let mut drawn = [0u8; 16];
                getrandom::fill(&mut drawn)
                    .map_err(|e| Error::Fatal(format!("getrandom failed: {e}")))?;
                let keyed = std::collections::hash_map::RandomState::new().hash_one(0u8);
                let hex: String = drawn.iter().map(|b| format!("{b:02x}")).collect();
                Ok(vec![Edit::SetAttribute {
                    section: SectionIndex(0),
                    attribute: Attribute::Ext {
                        key: "draw".into(),
                        value: Some(format!("{hex}-{keyed:016x}")),
                    },
                }])
            }
            "ok" => Ok(Vec::new()),
            other => Err(Error::InvalidConfig(format!("unknown mode {other:?}"))),
        }
    }
}

sdk::export!(Evil);
