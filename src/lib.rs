//! smpp-broker: a persistent queueing SMPP v3.4 broker.
//!
//! A message's way through the modules, and the layers they form (each module
//! uses only those in the layers below it; `app` wires them together):
//!
//! ```text
//!  ESME ──SMPP──▶ smpp ──▶ store ◀── dispatch ──HTTP──▶ upstream (SMSGate, sandbox)
//!  ESME ◀─deliver_sm── smpp::delivery ◀── store ◀── http (webhooks), dispatch (polling)
//! ```
//!
//! - entry: `app` (`Broker`: start in named steps, run, drain), `main.rs` (the CLI).
//! - edges: `smpp` (the SMPP front end: wire, messages, connections; see its
//!   module doc), `http` (health, readiness, metrics, webhooks), `dispatch` (one
//!   dispatcher per upstream; `dispatch::upstream` the neutral vocabulary,
//!   `dispatch::smsgate` and `dispatch::sandbox` the upstreams), `routing` (which
//!   account an incoming message belongs to), `metrics`, `accept` (accept loops'
//!   failure handling), `fd_limit` (the open-file limit and connection caps).
//! - the store: `store` (the only module with SQL; one interface, a backend
//!   under it: `store::sqlite`).
//! - foundations, which import nothing above them: `config` (typed settings,
//!   validated at load), `text` (SMS alphabets), `smpp::pdu` (the pure codec,
//!   whose types config and metrics name), `clock` and `time` (wall clock and
//!   calendar), `tasks` (the tracker shutdown drains), `log_throttle`, `telemetry`.

pub mod accept;
pub mod app;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod fd_limit;
pub mod http;
pub mod live;
pub mod log_throttle;
pub mod metrics;
pub mod reload;
pub mod routing;
pub mod smpp;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod text;
pub mod time;

pub use app::Broker;
pub use config::Settings;
