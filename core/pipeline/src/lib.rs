//! A district's pipeline: the file an admin writes ([`config`]), composed from each stage's own
//! config; when `rosterflow serve` runs it ([`schedule`]); and one run of it, stage after stage
//! ([`sync`]), with what its failures mean ([`failure`]); and what is wrong with the district's
//! data, read as a run would read it but changing nothing ([`doctor`]).

pub mod config;
pub mod doctor;
pub mod failure;
pub mod schedule;
pub mod sync;
