//! What one plugin run may use: the store's data (a WASI context that grants nothing but seeded
//! randomness, the log sink), the memory limiter, and the epoch ticker that enforces time
//! budgets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{EngineWeak, ResourceLimiter};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::PluginGrants;
use super::bindings::v0_1_0;
use super::random::Seed;

/// How often the epoch advances: the granularity of time budgets.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// Bytes of a plugin's stdout and stderr kept (a panic message lands in stderr).
const STDIO_CAPACITY: usize = 256 * 1024;
/// Log lines kept per run; later ones are counted, not kept.
const MAX_LOG_LINES: usize = 1000;
/// Bytes kept of one log line.
const MAX_LOG_LINE: usize = 4096;

/// The data of one plugin run's `Store`.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) log: LogSink,
    stderr: MemoryOutputPipe,
}

impl RunState {
    pub(crate) fn new(
        plugin: &str,
        memory_bytes: usize,
        grants: &PluginGrants,
        seed: &Seed,
    ) -> RunState {
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        // Nothing is granted by default: no preopens, env, args or network (the builder's
        // defaults), stdin closed, output to bounded pipes, clocks frozen at zero, and random
        // drawn from `seed` instead of the operating system.
        wasi.stdout(MemoryOutputPipe::new(STDIO_CAPACITY))
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        seed.grant(&mut wasi);
        if !grants.clock {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        RunState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_bytes),
            log: LogSink::new(plugin),
            stderr,
        }
    }

    /// What the plugin wrote to stderr (a panic message, usually), lossily decoded and trimmed.
    pub(crate) fn stderr(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_1_0::rosterflow::plugin::types::Host for RunState {}

impl v0_1_0::rosterflow::plugin::log::Host for RunState {
    fn log(&mut self, level: v0_1_0::Level, message: String) {
        self.log.push(level.into(), message);
    }
}

/// The WASI clock interface as wasmtime-wasi registers it (a guest's `@0.2.x` import matches).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The trap a plugin that tries to sleep gets.
#[derive(Debug, thiserror::Error)]
#[error("it tried to sleep, which plugins may not do")]
pub(crate) struct SleepDenied;

/// Replaces WASI's two ways to sleep with traps. A sleep blocks in host code, where the epoch
/// deadline cannot reach it, so it would hold the thread past the time budget; and a plugin has
/// nothing to wait for.
pub(crate) fn deny_sleep(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::Error::new(SleepDenied))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::Error::new(SleepDenied))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A clock that always reads zero: what a plugin sees when no clock is granted.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the total linear memory of a run and remembers whether the cap was hit, so that the
/// trap that follows (an allocation failure aborts the guest) is reported as the memory cap.
pub(crate) struct Limiter {
    cap: usize,
    used: usize,
    pub(crate) peak: usize,
    pub(crate) refused: bool,
}

impl Limiter {
    fn new(cap: usize) -> Limiter {
        Limiter {
            cap,
            used: 0,
            peak: 0,
            refused: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.cap {
            self.refused = true;
            return Ok(false);
        }
        self.used = next;
        self.peak = self.peak.max(next);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; no honest plugin needs a million of them.
        Ok(desired <= 1_000_000)
    }
}

/// How much a plugin log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<v0_1_0::Level> for LogLevel {
    fn from(level: v0_1_0::Level) -> LogLevel {
        match level {
            v0_1_0::Level::Trace => LogLevel::Trace,
            v0_1_0::Level::Debug => LogLevel::Debug,
            v0_1_0::Level::Info => LogLevel::Info,
            v0_1_0::Level::Warn => LogLevel::Warn,
            v0_1_0::Level::Error => LogLevel::Error,
        }
    }
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Keeps a bounded number of a run's log lines and forwards them to `tracing`.
pub(crate) struct LogSink {
    plugin: String,
    pub(crate) lines: Vec<PluginLogLine>,
    pub(crate) dropped: usize,
}

impl LogSink {
    fn new(plugin: &str) -> LogSink {
        LogSink {
            plugin: plugin.to_owned(),
            lines: Vec::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, level: LogLevel, mut message: String) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        // A line break in a message would forge a log line of the host's.
        if message.contains(char::is_control) {
            message = super::one_line(&message, MAX_LOG_LINE);
        }
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            // A plugin's own error does not need an operator yet: the stage's error does.
            LogLevel::Error => tracing::warn!(plugin, "{message}"),
        }
        self.lines.push(PluginLogLine { level, message });
    }
}

/// Advances the engine's epoch every [`TICK`] until the host is dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(crate) fn start(engine: EngineWeak) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
