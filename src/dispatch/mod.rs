//! Dispatchers drain the outbox to the upstreams: one per upstream, each with
//! its own throttle, retries and pause.

pub mod policy;
pub mod smsgate;
