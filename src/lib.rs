//! smpp-broker: a persistent queueing SMPP v3.4 broker.

pub mod smpp;
