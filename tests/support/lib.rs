//! Test support for rosterflow: a Clever Data API v3.0 simulator and the districts it serves.
//!
//! # Layout
//! - [`clever_sim`]: the simulator, a local HTTP server faithful to Clever's specs and real
//!   responses, with fault injection and a request log, for extract tests.
//! - [`district`]: [`district::Dataset`] (the district's Clever objects, editable between syncs,
//!   with an events feed), [`district::Dataset::demo`] (the real Clever demo district) and
//!   [`district::generate`] (synthetic districts up to a million students), plus recordings on
//!   disk in the layout of `pipelines/demo/`.
//!
//! The integration tests (`tests/integration/`) and the benchmarks use both; nothing here
//! depends on the `rosterflow` crate, so the simulator stays an independent reading of Clever.

pub mod clever_sim;
pub mod district;
