//! The integration tests: one binary, a module per area, against real parts (the Clever API
//! simulator on 127.0.0.1, real SQLite and PostgreSQL, real WASM components, a real SMTP server,
//! DuckDB and pyarrow reading the Parquet).

mod util;

mod admin;
mod contract;
mod events;
mod history;
mod oneroster;
mod oneroster_rest;
mod properties;
mod rollover;
mod runner;
mod sync;
mod transforms;
mod trust;

mod plugins;

mod console_hardening;
mod doctor;
mod email;
mod export;
mod install;
mod serve;
mod sign_in;
mod sign_in_browser;
mod storage_faults;
mod welcome;
