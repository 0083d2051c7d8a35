//! The operator console (issue 16): an overview page and its JSON twin on a
//! port of their own (`[admin] bind`), behind HTTP Basic when it is not on
//! loopback (`auth`). What it shows is gathered in `status` and drawn in
//! `page`; the data comes from the store, the session registry and the
//! upstreams' members, which it only reads.

mod actions;
mod auth;
mod page;
mod status;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use tracing::warn;

pub use auth::Credentials;
pub use status::Status;

use crate::clock::Clock;
use crate::http::Configured;
use crate::live::Live;
use crate::reload::Reloader;
use crate::smpp::registry::Registry;
use crate::store::Store;

/// How often the overview page reloads itself.
const REFRESH_S: u32 = 10;

#[derive(Clone)]
pub struct ConsoleState {
    pub store: Store,
    /// The upstreams' members and the accounts, as the last reload made them.
    pub configured: Arc<Live<Configured>>,
    /// Reads the configuration again (`POST /api/reload`).
    pub reloader: Arc<Reloader>,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub started: Instant,
    /// The store as the page names it (`Store::describe`).
    pub store_description: String,
    /// Each account's recent submits (the sessions count them).
    pub activity: Arc<crate::smpp::activity::Activity>,
    /// What every POST must carry (actions.rs): random, made at startup.
    pub csrf_token: String,
}

impl ConsoleState {
    /// A fresh token for the actions' forms.
    pub fn new_csrf_token() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}

pub fn router(state: ConsoleState, credentials: Option<Arc<Credentials>>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/api/status", get(api_status))
        .route("/messages", get(messages))
        .route("/api/messages", get(api_messages))
        .route("/api/upstreams/{name}/{action}", post(actions::hold))
        .route("/api/sessions/{id}/disconnect", post(actions::disconnect))
        .route("/api/reload", post(actions::reload))
        .with_state(state)
        .layer(middleware::from_fn_with_state(credentials, auth::require))
}

async fn overview(State(state): State<ConsoleState>) -> Response {
    match Status::gather(&state).await {
        Ok(status) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page::overview(&status, &state.csrf_token, REFRESH_S),
        )
            .into_response(),
        Err(err) => unavailable(err),
    }
}

async fn api_status(State(state): State<ConsoleState>) -> Response {
    match Status::gather(&state).await {
        Ok(status) => {
            let mut value = serde_json::to_value(status).unwrap_or_default();
            value["csrf_token"] = serde_json::Value::String(state.csrf_token.clone());
            Json(value).into_response()
        }
        Err(err) => unavailable(err),
    }
}

/// `?q=`: a message_id or a destination number.
#[derive(serde::Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

async fn messages(State(state): State<ConsoleState>, Query(search): Query<Search>) -> Response {
    match state
        .store
        .find_messages(&search.q, state.clock.now_ms())
        .await
    {
        Ok(found) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page::messages(&search.q, &found, state.clock.now_ms()),
        )
            .into_response(),
        Err(err) => unavailable(err),
    }
}

async fn api_messages(State(state): State<ConsoleState>, Query(search): Query<Search>) -> Response {
    match state
        .store
        .find_messages(&search.q, state.clock.now_ms())
        .await
    {
        Ok(found) => Json(serde_json::json!({"q": search.q, "messages": found})).into_response(),
        Err(err) => unavailable(err),
    }
}

/// The store could not be read: said plainly, as /readyz would.
fn unavailable(err: crate::store::StoreError) -> Response {
    warn!(error = %err, "console: reading the store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store cannot be read: {err}\n"),
    )
        .into_response()
}
