//! Test support for rosterflow: a Clever Data API v3.0 simulator, a OneRoster REST simulator,
//! the districts they serve (also as OneRoster CSV feeds), and the `rosterflow` binary to run
//! against them.
//!
//! # Layout
//! - [`binary`]: the `rosterflow` binary, built by cargo on first use, for tests and benchmarks
//!   that run it as a process.
//! - [`clever_sim`]: the simulator, a local HTTP server faithful to Clever's specs and real
//!   responses, with fault injection and a request log, for extract tests.
//! - [`district`]: [`district::Dataset`] (the district's Clever objects, editable between syncs,
//!   with an events feed), [`district::Dataset::demo`] (the real Clever demo district) and
//!   [`district::generate`] (synthetic districts up to a million students), plus recordings on
//!   disk in the layout of `pipelines/demo/`, and as OneRoster 1.1 or 1.2 CSV feeds, bulk or
//!   delta ([`district::Dataset::write_oneroster`]).
//! - [`pg_server`]: a PostgreSQL server of a test's own, to stop and start under a run.
//! - [`tcp_proxy`]: a proxy in front of PostgreSQL that cuts or holds the connections when a
//!   client sends a given message, for storage-fault tests.
//! - [`oneroster_sim`]: a OneRoster 1.1 and 1.2 REST server for a dataset, with OAuth 2 client
//!   credentials, paging, delta filters, fault injection and a request log.
//!
//! The integration tests (`tests/integration/`) and the benchmarks use them all; nothing here
//! depends on the `rosterflow` crate (the binary is built by cargo, not linked), so the simulator
//! stays an independent reading of Clever.

mod base64;
pub mod binary;
pub mod clever_sim;
pub mod district;
pub mod oneroster_sim;
pub mod pg_server;
pub mod tcp_proxy;
