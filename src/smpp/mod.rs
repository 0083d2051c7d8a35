//! The SMPP v3.4 front end, in three layers; each uses only the ones before it:
//!
//! - the wire, pure and without I/O: `pdu` (every PDU, TLV and status), `codec`
//!   (framing with the length guard), `state` (which operation a bind state
//!   admits), `time` (SMPP time strings);
//! - messages, against the store: `service` (the `MessageService` seam sessions
//!   call), `handler` (its implementation: one function per request), `submit`
//!   (a PDU to a validated message), `refusals` (the refused-request log), and
//!   for the way back `delivery` (the hub handing receipts and incoming messages
//!   to receivers), `receipt` and `incoming` (their deliver_sm);
//! - connections: `listener` and `tls` (accept), `session` (one task per
//!   connection, which knows messages only through `service` and the hub),
//!   `auth`, `throttle`, `registry` (who is bound).

pub mod activity;
pub mod auth;
pub mod codec;
pub mod delivery;
pub mod handler;
pub mod incoming;
pub mod listener;
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
