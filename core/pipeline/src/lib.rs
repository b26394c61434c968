//! A district's pipeline: the file an admin writes ([`config`]), composed from each stage's own
//! config; when `rosterflow serve` runs it ([`schedule`]); and one run of it, stage after stage
//! ([`sync`]).

pub mod config;
pub mod schedule;
pub mod sync;
