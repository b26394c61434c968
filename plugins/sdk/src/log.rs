//! The plugin's log: lines go to the host, which files them under the plugin's name (and keeps
//! a bounded number). Run natively (tests, benchmarks), they go to stderr.

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Logs one line. Never put a student's name in it: the host's log is read by operators.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::__guest::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

/// Logs a line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs a line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs a line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs a line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}
