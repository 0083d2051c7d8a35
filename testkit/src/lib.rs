//! Test support for smpp-broker, shared by the test binaries under `tests/` and by
//! `smpp-bench` (bench/).
//!
//! - [`TestBroker::builder`]: an in-process broker on 127.0.0.1 port 0 with a
//!   temporary database, the one way tests start one.
//! - [`Esme`]: a minimal ESME on the broker's own codec that speaks raw PDUs;
//!   [`sms`] builds and submits the messages tests send.
//! - [`eventually`] and [`PATIENCE`]: waiting for what should happen promptly.
//! - [`db`]: typed peeks at a test broker's database.
//! - [`fake_smsgate`]: a fault-injecting SMSGate REST server, with its own tests.
//! - [`process`]: the broker binary as a child process, for tests that kill it
//!   and for the benchmarks.
//! - [`logs`]: what the broker logs during a test.
//! - [`postgres`]: a throwaway PostgreSQL cluster from Debian's binaries.

pub mod broker;
pub mod db;
pub mod esme;
pub mod eventually;
pub mod fake_smsgate;
pub mod logs;
pub mod postgres;
pub mod process;
pub mod sms;

pub use broker::{post_event, TestBroker, TestBrokerBuilder};
pub use esme::Esme;
pub use eventually::{eventually, PATIENCE};
