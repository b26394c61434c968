//! Teacher accounts as rosterflow hands them over: single-use, expiring password-set tokens
//! ([`account`]) and the welcome emails that carry them ([`email`]), delivered exactly once
//! after a run commits.

pub mod account;
pub mod email;
