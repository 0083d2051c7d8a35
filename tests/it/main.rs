//! Behaviour tests in the test's own process: the broker on 127.0.0.1 port 0 with
//! a temporary database (testkit's `TestBroker`), driven by raw PDUs, a fake
//! SMSGate and plain HTTP; parts of it alone on injected or paused clocks.
//! Nothing here needs a tool beyond Rust: `cargo test --test it`.

mod bind_protection;
mod console;
mod dispatch;
mod dispatch_time;
mod http_limits;
mod inbox;
mod many_sessions;
mod metrics;
mod outbox;
mod paths_named;
mod receipts;
mod refusal_log;
mod reload;
mod routes;
mod session_only;
mod session_timers;
mod smpp_session;
mod stalled_reader;
mod webhooks;
