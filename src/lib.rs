//! smpp-broker: a persistent queueing SMPP v3.4 broker.

pub mod accept;
pub mod app;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod fd_limit;
pub mod http;
pub mod log_throttle;
pub mod metrics;
pub mod routing;
pub mod smpp;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod time;

pub use app::Broker;
pub use config::Settings;
