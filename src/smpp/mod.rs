//! The SMPP v3.4 front end: codec, framing, sessions, listeners.

pub mod auth;
pub mod codec;
pub mod delivery;
pub mod incoming;
pub mod listener;
pub mod outbox;
pub mod pdu;
pub mod receipt;
pub mod refusals;
pub mod registry;
pub mod service;
pub mod session;
pub mod state;
pub mod submit;
pub mod throttle;
pub mod time;
pub mod tls;
