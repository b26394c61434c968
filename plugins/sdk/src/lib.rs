//! # rosterflow plugin SDK
//!
//! Write a rosterflow transform plugin in plain Rust: implement [`Plugin`], call [`export!`],
//! build for `wasm32-wasip2`. The plugin reads one district's [`Snapshot`] and returns
//! [`Edit`]s (make a group, add or remove a member, drop a section or a user, set a field);
//! rosterflow validates every edit, applies all of them or none, and records the plugin as their
//! author. A plugin gets its config, a [`log`] and random numbers, and nothing else: no
//! filesystem, network, clock or environment. The random numbers (what `getrandom`, `rand` and
//! `HashMap` keys draw from) are seeded by the host from the stage, its config and the snapshot,
//! so a rerun on the same roster draws the same ones and proposes the same edits; they are not
//! secret.
//!
//! ```
//! use rosterflow_plugin_sdk::{Edit, Error, Info, Plugin, Snapshot};
//!
//! /// Drops every section whose name contains a word from the config.
//! struct DropByName;
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     words: Vec<String>,
//! }
//!
//! impl Plugin for DropByName {
//!     type Config = Config;
//!
//!     fn info() -> Info {
//!         Info {
//!             name: "drop-by-name".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "drops sections by name".into(),
//!             ..Info::default()
//!         }
//!     }
//!
//!     fn run(config: &Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
//!         Ok(snapshot
//!             .sections_indexed()
//!             .filter(|(_, s)| config.words.iter().any(|w| s.name.contains(w.as_str())))
//!             .map(|(i, _)| Edit::DropSection(i))
//!             .collect())
//!     }
//! }
//!
//! rosterflow_plugin_sdk::export!(DropByName);
//! ```
//!
//! The crate must be a `cdylib` (`[lib] crate-type = ["cdylib"]`, plus `"rlib"` to test it
//! natively); `cargo build --target wasm32-wasip2 --release` then writes the component to
//! `target/wasm32-wasip2/release/<crate>.wasm`. The README beside this crate walks through it.
//!
//! # Layout
//!
//! - [`snapshot`](Snapshot): what a plugin reads. Records refer to each other by typed index
//!   ([`StudentIndex`], [`SectionIndex`]...), never by Clever id: ids cost time to copy, so
//!   they are sent only to plugins that ask ([`Wants`]).
//! - [`edit`](Edit): what a plugin returns, and its [`Error`]s.
//! - [`log`]: the plugin's log.
//! - [`Plugin`] and [`export!`]: the one trait and the one macro.
//!
//! Both `snapshot` and `edit` depend on nothing but `std`, so the same plugin logic runs natively
//! in unit tests ([`run_native`]) and benchmarks.

mod edit;
pub mod log;
mod snapshot;

#[doc(hidden)]
#[path = "guest.rs"]
pub mod __guest;

pub use edit::{Attribute, Edit, Error, Group, Info, Member, Wants};
pub use snapshot::{
    Course, CourseIndex, GradeIndex, School, SchoolIndex, Section, SectionIndex, Snapshot, Student,
    StudentIds, StudentIndex, Teacher, TeacherDetails, TeacherIndex, Term, TermIndex,
};

/// A rosterflow plugin. Implement it on a unit struct and pass that to [`export!`].
pub trait Plugin {
    /// The plugin's config: the pipeline's `[transform.config]` table, which the host hands over
    /// as JSON. An absent table arrives as `{}`.
    type Config: serde::de::DeserializeOwned;

    /// Name, version, one-line description, and the costly columns it reads.
    fn info() -> Info;

    /// Checks a parsed config before any run (`rosterflow validate` calls it). Parsing errors
    /// are reported already; check what serde cannot (ranges, contradictions).
    fn check(config: &Self::Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Reads the snapshot and proposes edits.
    fn run(config: &Self::Config, snapshot: &Snapshot) -> Result<Vec<Edit>, Error>;
}

/// Parses a plugin's config from the JSON the host sends; an empty string counts as `{}`.
pub fn parse_config<C: serde::de::DeserializeOwned>(json: &str) -> Result<C, Error> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| Error::InvalidConfig(e.to_string()))
}

/// Runs a plugin natively, as the host would (parse the config, check it, run): for unit tests
/// and benchmarks of plugin logic without a WASM runtime.
pub fn run_native<P: Plugin>(config_json: &str, snapshot: &Snapshot) -> Result<Vec<Edit>, Error> {
    let config = parse_config::<P::Config>(config_json)?;
    P::check(&config)?;
    P::run(&config, snapshot)
}

/// Exports a [`Plugin`] as the component's `rosterflow:plugin/transform@0.1.0`.
///
/// Call it once, at the crate root: `rosterflow_plugin_sdk::export!(MyPlugin);`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        // Only a WASM build exports anything: native builds (tests, benchmarks) link the plugin
        // logic alone, and component export names are not valid native symbols.
        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        type __RosterflowPluginExport = $crate::__guest::Adapter<$plugin>;
        #[cfg(target_family = "wasm")]
        $crate::__guest::__export_world!(__RosterflowPluginExport with_types_in $crate::__guest);
    };
}
