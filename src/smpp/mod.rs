//! The SMPP v3.4 front end: codec, framing, sessions, listeners.

pub mod pdu;
pub mod codec;
