//! The SMSGate (android-sms-gateway) upstream, all of it (docs/smsgate-api.md):
//! - `api`: what a request looks like and what each answer means (pure);
//! - `client`: the HTTP client, a tower service the dispatcher throttles;
//! - `webhook`: the events the phone posts (signature, parsing, what each does);
//! - `register`: registering those webhooks at startup;
//! - `inbox`: reading incoming messages by polling, when no webhook can reach us.
//!
//! It speaks the upstream-neutral vocabulary of `dispatch/upstream.rs`.

pub mod api;
pub mod client;
pub mod inbox;
pub mod register;
pub mod webhook;

#[cfg(test)]
mod tests;
