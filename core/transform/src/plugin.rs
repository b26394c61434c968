//! The wasmtime host for district WASM plugins: loads a component, runs it on a snapshot under
//! a time budget, a memory cap and an output cap, checks the edits it proposes and applies them
//! (all or none), recording the plugin as their author.
//!
//! # Layout
//!
//! - this file: the public API ([`PluginHost`], [`Plugin`], [`PluginLimits`], [`PluginError`]...)
//!   and the call itself: one `Store` per run, an epoch deadline per call, failures classified
//!   into the limit that was hit.
//! - `bindings`: the generated bindings, one module per supported `wit/` version; private.
//! - `input`: `model::Snapshot` to the interface's index tables.
//! - `edit`: validating, showing ([`Edit`]) and applying what a plugin returns.
//! - `cache`: compiled components on disk, keyed by content hash and engine.
//! - `sandbox`: the store's data (WASI with nothing granted, the log), the memory limiter and
//!   the epoch ticker.
//! - `random`: the seed of a call's WASI random, from the stage and the snapshot, so that a
//!   rerun on the same roster draws the same bytes.
//!
//! One [`PluginHost`] per process holds the `Engine` (component model, epoch interruption), the
//! `Linker` (built once) and the compiled components. A plugin that traps is never re-entered:
//! every call gets a fresh instance in a fresh store.

mod bindings;
mod cache;
mod edit;
#[cfg(test)]
mod edits_fuzz;
mod input;
mod random;
mod sandbox;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

use rosterflow_model::Snapshot;

use bindings::v0_1_0::{self, wire};
use random::Seed;
pub(crate) use rosterflow_model::text::one_line;
use sandbox::{RunState, Ticker};

pub use edit::{Attribute, Edit, EditCounts, Group, Member};
pub use sandbox::{LogLevel, PluginLogLine};

/// Runs plugins. Cheap to clone and share; make one per process.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    linker: Linker<RunState>,
    cache_dir: Option<PathBuf>,
    /// Components already compiled or deserialised by this process, by SHA-256.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    _ticker: Ticker,
}

/// What one plugin run may use. `Default` is the pipeline default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one call into the plugin, in milliseconds.
    pub timeout_ms: u64,
    /// Cap on the plugin's linear memory, in MiB (the snapshot it receives lives there too).
    pub memory_mb: u64,
    /// Cap on the edits it returns, in MiB. The host also stops copying an output out of the
    /// plugin once the copy has cost it a fixed multiple of this (`edit::copy_budget`), so a
    /// plugin cannot make the host hold more than that, whatever its memory cap.
    pub max_output_mb: u64,
}

impl Default for PluginLimits {
    fn default() -> PluginLimits {
        PluginLimits {
            timeout_ms: 2000,
            memory_mb: 256,
            max_output_mb: 16,
        }
    }
}

impl fmt::Display for PluginLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ms per call, {} MB memory, {} MB output",
            self.timeout_ms, self.memory_mb, self.max_output_mb
        )
    }
}

/// Capabilities a pipeline may grant a plugin beyond its config and log. `Default` grants none:
/// no filesystem, network, environment or clock (the clock reads zero). Randomness is always
/// there, but drawn from a seed of the call's input, not from the operating system (`random`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginGrants {
    /// The real wall and monotonic clocks.
    pub clock: bool,
}

/// A loaded plugin, ready to run any number of times.
pub struct Plugin {
    host: PluginHost,
    pre: v0_1_0::PluginPre<RunState>,
    description: PluginDescription,
    wants: wire::Wants,
    grants: PluginGrants,
}

/// What `rosterflow plugin check` prints: the component, its interface and what it says about
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDescription {
    pub path: PathBuf,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The interface package it implements (`rosterflow:plugin@0.1.0`).
    pub interface: String,
    /// Its exports, each with its functions.
    pub exports: Vec<String>,
    /// Its imports (the plugin log, and the WASI interfaces its standard library names; all
    /// denied unless granted).
    pub imports: Vec<String>,
    /// The plugin's own name, version and description.
    pub name: String,
    pub version: String,
    pub description: String,
    /// The costly columns it asked for (`student-ids`, `teacher-details`, `section-ext`).
    pub wants: Vec<String>,
}

impl fmt::Display for PluginDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plugin     {} {}: {}",
            self.name, self.version, self.description
        )?;
        writeln!(
            f,
            "file       {} (sha256 {})",
            self.path.display(),
            self.sha256
        )?;
        writeln!(
            f,
            "interface  {} (this host runs {})",
            self.interface,
            bindings::SUPPORTED.join(", ")
        )?;
        writeln!(f, "exports    {}", self.exports.join("\n           "))?;
        writeln!(f, "imports    {}", self.imports.join("\n           "))?;
        if self.wants.is_empty() {
            write!(f, "wants      no costly columns")
        } else {
            write!(f, "wants      {}", self.wants.join(", "))
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginReport {
    /// The plugin's name in the pipeline.
    pub plugin: String,
    pub counts: EditCounts,
    /// Lines the plugin logged (at most 1000 kept).
    pub log: Vec<PluginLogLine>,
    /// Lines logged beyond those kept.
    pub log_dropped: usize,
    /// Size of the edits it returned, as the output cap counts it.
    pub output_bytes: usize,
    /// The most linear memory it held.
    pub memory_peak_bytes: usize,
    /// The whole run: conversion, call, validation and application.
    pub elapsed: Duration,
}

impl fmt::Display for PluginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "plugin {}: {} groups created, {} members added, {} removed, {} sections, {} \
             students and {} teachers dropped, {} attributes set ({} ms, {} KiB out, {} MiB \
             memory)",
            self.plugin,
            c.groups_created,
            c.members_added,
            c.members_removed,
            c.sections_dropped,
            c.students_dropped,
            c.teachers_dropped,
            c.attributes_set,
            self.elapsed.as_millis(),
            self.output_bytes / 1024,
            self.memory_peak_bytes / (1024 * 1024)
        )
    }
}

/// What a plugin reported when it returned an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginErrorKind {
    InvalidConfig,
    UnsupportedSnapshot,
    Fatal,
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginErrorKind::InvalidConfig => "invalid config",
            PluginErrorKind::UnsupportedSnapshot => "an unsupported snapshot",
            PluginErrorKind::Fatal => "a fatal error",
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a plugin could not be loaded or run. Every variant names the plugin; for a run, that is
/// its name in the pipeline, for a load, its file name.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start the plugin engine")]
    Engine(#[source] BoxError),
    #[error("cannot read plugin {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin} is not a valid WebAssembly component")]
    Compile {
        plugin: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "plugin {plugin} exports no rosterflow plugin interface (its exports: {exports}); build \
         it with rosterflow-plugin-sdk"
    )]
    NotAPlugin { plugin: String, exports: String },
    #[error(
        "plugin {plugin} was built for {found}, which this host does not run (it runs \
         {supported}); rebuild it against a supported rosterflow-plugin-sdk"
    )]
    UnsupportedInterface {
        plugin: String,
        found: String,
        supported: String,
    },
    #[error("plugin {plugin} imports something rosterflow does not provide")]
    Link {
        plugin: String,
        #[source]
        source: BoxError,
    },
    #[error("plugin name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidName { name: String },
    #[error("plugin {plugin}: {reason}")]
    InvalidLimits { plugin: String, reason: String },
    #[error("plugin {plugin} cannot run on this snapshot: {reason}")]
    InconsistentSnapshot { plugin: String, reason: String },
    #[error("plugin {plugin} exceeded its time budget of {timeout_ms} ms")]
    Timeout { plugin: String, timeout_ms: u64 },
    #[error("plugin {plugin} exceeded its memory cap of {memory_mb} MB")]
    OutOfMemory { plugin: String, memory_mb: u64 },
    #[error("plugin {plugin} {}", output_note(*.output_bytes, *.max_output_mb))]
    OutputTooLarge {
        plugin: String,
        /// The size of its edits as the cap counts them, when the host copied them all; `None`
        /// when it stopped copying at its budget (see `edit::copy_budget`).
        output_bytes: Option<usize>,
        max_output_mb: u64,
    },
    #[error("plugin {plugin} crashed: {message}{}", stderr_note(.stderr))]
    Trapped {
        plugin: String,
        message: String,
        /// The end of what it wrote to stderr (a panic message, usually).
        stderr: String,
    },
    #[error("plugin {plugin} reported {kind}: {message}")]
    Reported {
        plugin: String,
        kind: PluginErrorKind,
        message: String,
    },
    #[error("plugin {plugin} returned an invalid edit (edit #{index}): {reason}")]
    InvalidEdit {
        plugin: String,
        /// Position of the edit in the plugin's output, from 0.
        index: usize,
        reason: String,
    },
}

impl PluginError {
    /// Whether the pipeline must change for the plugin to run: the file named cannot be read
    /// or is not a plugin rosterflow can run, its settings are wrong, or it refused its config.
    /// Everything else went wrong while it ran.
    pub fn is_config(&self) -> bool {
        match self {
            PluginError::Read { .. }
            | PluginError::Compile { .. }
            | PluginError::NotAPlugin { .. }
            | PluginError::UnsupportedInterface { .. }
            | PluginError::Link { .. }
            | PluginError::InvalidName { .. }
            | PluginError::InvalidLimits { .. } => true,
            PluginError::Reported { kind, .. } => *kind == PluginErrorKind::InvalidConfig,
            _ => false,
        }
    }
}

impl PluginError {
    /// The plugin's config is wrong (the pipeline file must change), as opposed to the plugin
    /// or its run.
    pub fn is_invalid_config(&self) -> bool {
        matches!(
            self,
            PluginError::Reported {
                kind: PluginErrorKind::InvalidConfig,
                ..
            } | PluginError::InvalidName { .. }
                | PluginError::InvalidLimits { .. }
        )
    }
}

fn output_note(output_bytes: Option<usize>, max_output_mb: u64) -> String {
    match output_bytes {
        Some(bytes) => {
            format!("returned {bytes} bytes of edits, over its output cap of {max_output_mb} MB")
        }
        None => format!(
            "passed the host more than its output cap of {max_output_mb} MB allows; the host \
             stopped copying it"
        ),
    }
}

fn stderr_note(stderr: &str) -> String {
    const KEEP: usize = 2000;
    if stderr.is_empty() {
        return String::new();
    }
    let mut start = stderr.len().saturating_sub(KEEP);
    while !stderr.is_char_boundary(start) {
        start += 1;
    }
    format!(" (its stderr: {})", &stderr[start..])
}

/// The process's plugin host, started the first time a pipeline needs one and then lent to
/// every run: one wasmtime engine per process, each component compiled once.
#[derive(Clone, Default)]
pub struct Plugins {
    cache_dir: Option<PathBuf>,
    host: Arc<Mutex<Option<PluginHost>>>,
}

impl Plugins {
    /// Plugins compiled into `cache_dir` (see [`PluginHost::new`]), or kept in memory.
    pub fn new(cache_dir: Option<PathBuf>) -> Plugins {
        Plugins {
            cache_dir,
            host: Arc::default(),
        }
    }

    /// The host, started on first use.
    pub fn host(&self) -> Result<PluginHost, PluginError> {
        let mut host = self.host.lock().expect("plugin host lock");
        match &*host {
            Some(host) => Ok(host.clone()),
            None => Ok(host
                .insert(PluginHost::new(self.cache_dir.clone())?)
                .clone()),
        }
    }
}

impl PluginHost {
    /// Starts the engine and its epoch ticker. With a `cache_dir`, compiled components are kept
    /// there (keyed by content hash and engine) for later processes; the directory must be
    /// writable only by the account running rosterflow. Without, they are cached in memory only.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginHost, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine(e.into_boxed_dyn_error());
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        sandbox::deny_sleep(&mut linker).map_err(engine_error)?;
        v0_1_0::Plugin::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        let ticker = Ticker::start(engine.weak()).map_err(|e| PluginError::Engine(Box::new(e)))?;
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                cache_dir,
                compiled: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// Loads a plugin: compiles it (or takes it from a cache), checks the interface it
    /// implements and its imports, and asks it to describe itself.
    pub fn load(&self, wasm: &Path) -> Result<Plugin, PluginError> {
        let plugin = wasm
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| wasm.display().to_string());
        let bytes = std::fs::read(wasm).map_err(|source| PluginError::Read {
            path: wasm.to_owned(),
            source,
        })?;
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let component = self.component(&bytes, &sha256, &plugin)?;

        let engine = &self.inner.engine;
        let ty = component.component_type();
        let mut exports = Vec::new();
        let mut implemented = None;
        for (name, item) in ty.exports(engine) {
            let functions = match &item.ty {
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(engine)
                    .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                    .map(|(f, _)| f.to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            exports.push(if functions.is_empty() {
                name.to_owned()
            } else {
                format!("{name} ({functions})")
            });
            if let Some(version) = name.strip_prefix(bindings::EXPORT_PREFIX) {
                implemented = Some(format!("rosterflow:plugin@{version}"));
            }
        }
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        match implemented.as_deref() {
            Some(v0_1_0::PACKAGE) => {}
            Some(found) => {
                return Err(PluginError::UnsupportedInterface {
                    plugin,
                    found: found.to_owned(),
                    supported: bindings::SUPPORTED.join(", "),
                });
            }
            None => {
                return Err(PluginError::NotAPlugin {
                    plugin,
                    exports: if exports.is_empty() {
                        "none".into()
                    } else {
                        exports.join("; ")
                    },
                });
            }
        }

        let link_error = |e: wasmtime::Error| PluginError::Link {
            plugin: plugin.clone(),
            source: e.into_boxed_dyn_error(),
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = v0_1_0::PluginPre::new(instance_pre).map_err(link_error)?;

        let mut loaded = Plugin {
            host: self.clone(),
            pre,
            description: PluginDescription {
                path: wasm.to_owned(),
                sha256: hex::encode(sha256),
                interface: v0_1_0::PACKAGE.to_owned(),
                exports,
                imports,
                name: String::new(),
                version: String::new(),
                description: String::new(),
                wants: Vec::new(),
            },
            wants: wire::Wants::empty(),
            grants: PluginGrants::default(),
        };
        let info = loaded.describe_call(&plugin)?;
        loaded.wants = info.wants;
        let d = &mut loaded.description;
        d.name = info.name;
        d.version = info.version;
        d.description = info.description;
        for (flag, name) in [
            (wire::Wants::STUDENT_IDS, "student-ids"),
            (wire::Wants::TEACHER_DETAILS, "teacher-details"),
            (wire::Wants::SECTION_EXT, "section-ext"),
        ] {
            if info.wants.contains(flag) {
                d.wants.push(name.to_owned());
            }
        }
        Ok(loaded)
    }

    fn component(
        &self,
        bytes: &[u8],
        sha256: &[u8; 32],
        plugin: &str,
    ) -> Result<Component, PluginError> {
        // A poisoned lock only means another thread panicked while inserting; the map is fine.
        let cached = self
            .inner
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha256)
            .cloned();
        if let Some(component) = cached {
            return Ok(component);
        }
        let component = cache::load_or_compile(
            &self.inner.engine,
            bytes,
            sha256,
            self.inner.cache_dir.as_deref(),
            plugin,
        )?;
        self.inner
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*sha256, component.clone());
        Ok(component)
    }
}

/// Loads a plugin and returns what `rosterflow plugin check` prints.
pub fn check(host: &PluginHost, path: &Path) -> Result<PluginDescription, PluginError> {
    Ok(host.load(path)?.describe())
}

/// The wire edits of one successful call, with what the store observed.
struct Call {
    edits: Vec<wire::Edit>,
    state: RunState,
    output_bytes: usize,
}

impl Plugin {
    /// The interface it implements, its exports and imports, and what it says about itself
    /// (`rosterflow plugin check` prints it).
    pub fn describe(&self) -> PluginDescription {
        self.description.clone()
    }

    /// Grants capabilities beyond the default none.
    pub fn with_grants(mut self, grants: PluginGrants) -> Plugin {
        self.grants = grants;
        self
    }

    /// Asks the plugin to check a config (JSON) without a snapshot: for `rosterflow validate`.
    pub fn check_config(
        &self,
        name: &str,
        config_json: &str,
        limits: &PluginLimits,
    ) -> Result<(), PluginError> {
        check_name(name)?;
        let mut store = self.store(name, limits, &Seed::new(name, config_json, None))?;
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|p| {
                p.rosterflow_plugin_transform()
                    .call_check_config(&mut store, config_json)
            })
            .map_err(|e| failure(name, limits, &store, e))?;
        result.map_err(|e| reported(name, e))
    }

    /// Runs the plugin on `snapshot` and returns its edits, validated, without applying them:
    /// what `rosterflow plugin test` prints.
    pub fn propose(
        &self,
        name: &str,
        config_json: &str,
        limits: &PluginLimits,
        snapshot: &Snapshot,
    ) -> Result<Vec<Edit>, PluginError> {
        let call = self.call(name, config_json, limits, snapshot)?;
        edit::validate(name, &call.edits, snapshot)?;
        Ok(edit::to_public(name, &call.edits, snapshot))
    }

    /// Runs the plugin on `snapshot`, validates every edit it returns, then applies all of them
    /// or none, recording a decision (author `plugin:<name>`) for each change. `name` is the
    /// plugin's name in the pipeline: group ids become `plugin:<name>:<key>`.
    pub fn run(
        &self,
        name: &str,
        config_json: &str,
        limits: &PluginLimits,
        snapshot: &mut Snapshot,
    ) -> Result<PluginReport, PluginError> {
        let started = Instant::now();
        let call = self.call(name, config_json, limits, snapshot)?;
        edit::validate(name, &call.edits, snapshot)?;
        let counts = edit::apply(name, call.edits, snapshot);
        metrics::histogram!(rosterflow_model::metrics::PLUGIN_SECONDS, "plugin" => name.to_owned())
            .record(started.elapsed().as_secs_f64());
        let state = call.state;
        Ok(PluginReport {
            plugin: name.to_owned(),
            counts,
            log: state.log.lines,
            log_dropped: state.log.dropped,
            output_bytes: call.output_bytes,
            memory_peak_bytes: state.limiter.peak,
            elapsed: started.elapsed(),
        })
    }

    fn call(
        &self,
        name: &str,
        config_json: &str,
        limits: &PluginLimits,
        snapshot: &Snapshot,
    ) -> Result<Call, PluginError> {
        check_name(name)?;
        let input = input::to_wire(name, snapshot, self.wants)?;
        let seed = Seed::new(name, config_json, Some(&input));
        let mut store = self.store(name, limits, &seed)?;
        // The result is copied out of the plugin under the store's hostcall fuel (set in
        // `store`): an output whose copy would cost more than `edit::copy_budget` fails the call
        // while it is being copied, before the host holds it. One within that budget but over
        // the cap is refused below, once copied.
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|p| {
                p.rosterflow_plugin_transform()
                    .call_run(&mut store, config_json, &input)
            })
            .map_err(|e| failure(name, limits, &store, e))?;
        let edits = result.map_err(|e| reported(name, e))?;
        let output_bytes = edit::output_bytes(&edits);
        if output_bytes as u64 > max_output_bytes(limits) {
            return Err(PluginError::OutputTooLarge {
                plugin: name.to_owned(),
                output_bytes: Some(output_bytes),
                max_output_mb: limits.max_output_mb,
            });
        }
        Ok(Call {
            edits,
            state: store.into_data(),
            output_bytes,
        })
    }

    fn describe_call(&self, plugin: &str) -> Result<wire::Info, PluginError> {
        let limits = PluginLimits::default();
        let mut store = self.store(plugin, &limits, &Seed::new(plugin, "", None))?;
        self.pre
            .instantiate(&mut store)
            .and_then(|p| p.rosterflow_plugin_transform().call_describe(&mut store))
            .map_err(|e| failure(plugin, &limits, &store, e))
    }

    /// A fresh store: nothing granted but `self.grants` and random drawn from `seed`, the memory
    /// cap, the time budget, and the budget for copying data out of the plugin.
    fn store(
        &self,
        name: &str,
        limits: &PluginLimits,
        seed: &Seed,
    ) -> Result<Store<RunState>, PluginError> {
        let invalid = |reason: &str| PluginError::InvalidLimits {
            plugin: name.to_owned(),
            reason: reason.to_owned(),
        };
        if limits.timeout_ms == 0 {
            return Err(invalid("timeout_ms must be at least 1"));
        }
        if limits.memory_mb == 0 || limits.memory_mb > 4096 {
            return Err(invalid("memory_mb must be between 1 and 4096"));
        }
        if limits.max_output_mb == 0 {
            return Err(invalid("max_output_mb must be at least 1"));
        }
        let memory_bytes = usize::try_from(limits.memory_mb * 1024 * 1024)
            .map_err(|_| invalid("memory_mb does not fit this machine"))?;
        let state = RunState::new(name, memory_bytes, &self.grants, seed);
        let mut store = Store::new(&self.host.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // wasmtime charges each copy out of the plugin (the result of a call, the arguments of
        // each call it makes into the host) to this fuel before allocating for it, and fails the
        // copy when the fuel runs out: no one copy makes the host allocate more than this.
        store.set_hostcall_fuel(edit::copy_budget(max_output_bytes(limits)));
        let tick = sandbox::TICK.as_millis() as u64;
        store.set_epoch_deadline(limits.timeout_ms.div_ceil(tick).max(1));
        store.epoch_deadline_trap();
        Ok(store)
    }
}

/// Names which limit a failed call hit, or what the trap was.
fn failure(
    name: &str,
    limits: &PluginLimits,
    store: &Store<RunState>,
    error: wasmtime::Error,
) -> PluginError {
    let plugin = name.to_owned();
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return PluginError::Timeout {
            plugin,
            timeout_ms: limits.timeout_ms,
        };
    }
    if hostcall_fuel_exhausted(&error) {
        return PluginError::OutputTooLarge {
            plugin,
            output_bytes: None,
            max_output_mb: limits.max_output_mb,
        };
    }
    if store.data().limiter.refused {
        return PluginError::OutOfMemory {
            plugin,
            memory_mb: limits.memory_mb,
        };
    }
    let message = if let Some(trap) = trap {
        trap.to_string()
    } else if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        format!("it exited with status {}", exit.0)
    } else if let Some(sleep) = error.downcast_ref::<sandbox::SleepDenied>() {
        sleep.to_string()
    } else {
        format!("{error:#}")
    };
    PluginError::Trapped {
        plugin,
        message,
        stderr: store.data().stderr(),
    }
}

fn max_output_bytes(limits: &PluginLimits) -> u64 {
    limits.max_output_mb.saturating_mul(1024 * 1024)
}

/// wasmtime's message when a copy out of a guest runs out of hostcall fuel. Its error type is
/// private, so the message is all there is to recognise it by; the hostile suite's
/// `a_huge_output_is_stopped_while_it_is_copied` fails if a wasmtime upgrade rewords it.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

fn hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|e| e.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
}

fn reported(name: &str, error: wire::PluginError) -> PluginError {
    let (kind, message) = match error {
        wire::PluginError::InvalidConfig(m) => (PluginErrorKind::InvalidConfig, m),
        wire::PluginError::UnsupportedSnapshot(m) => (PluginErrorKind::UnsupportedSnapshot, m),
        wire::PluginError::Fatal(m) => (PluginErrorKind::Fatal, m),
    };
    PluginError::Reported {
        plugin: name.to_owned(),
        kind,
        message: one_line(&message, 1000),
    }
}

/// Pipeline names of plugins become part of class ids (`plugin:<name>:<key>`).
fn check_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_must_fit_in_a_class_id() {
        assert!(check_name("flex-groups_2.0").is_ok());
        for bad in ["", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stderr_note_keeps_the_end() {
        assert_eq!(stderr_note(""), "");
        let long = format!("{}panicked at boom", "x".repeat(5000));
        let note = stderr_note(&long);
        assert!(
            note.ends_with("panicked at boom)") && note.len() < 2100,
            "{note}"
        );
    }

    #[test]
    fn error_messages_name_the_plugin_and_the_limit() {
        let e = PluginError::Timeout {
            plugin: "flex-groups".into(),
            timeout_ms: 2000,
        };
        assert_eq!(
            e.to_string(),
            "plugin flex-groups exceeded its time budget of 2000 ms"
        );
        let e = PluginError::Trapped {
            plugin: "p".into(),
            message: "wasm trap".into(),
            stderr: "boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin p crashed: wasm trap (its stderr: boom)"
        );
        let e = PluginError::OutputTooLarge {
            plugin: "p".into(),
            output_bytes: Some(20_000_016),
            max_output_mb: 16,
        };
        assert_eq!(
            e.to_string(),
            "plugin p returned 20000016 bytes of edits, over its output cap of 16 MB"
        );
        let e = PluginError::OutputTooLarge {
            plugin: "p".into(),
            output_bytes: None,
            max_output_mb: 1,
        };
        assert_eq!(
            e.to_string(),
            "plugin p passed the host more than its output cap of 1 MB allows; the host stopped \
             copying it"
        );
    }

    #[test]
    fn the_host_is_shareable_across_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<PluginHost>();
        let host = PluginHost::new(None).expect("engine starts");
        assert!(host.load(Path::new("/nonexistent.wasm")).is_err());
    }
}
