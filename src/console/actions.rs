//! What an operator may change from the console: put an upstream on hold and
//! release it, disconnect a bound session, reload the configuration. Each is a POST carrying the
//! console's token (a form field `csrf` or the header `X-Csrf-Token`): a page
//! of another site can make a browser send a POST here, but cannot read the
//! token from this one. Each action is logged with who did it.

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde_json::json;
use tracing::info;

use super::auth::Operator;
use super::ConsoleState;

/// A form with the token is a few dozen bytes.
const MAX_FORM: usize = 4096;

/// `POST /api/upstreams/{name}/hold` and `…/release`.
pub async fn hold(
    State(state): State<ConsoleState>,
    Extension(operator): Extension<Operator>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refused) = check_token(&state, &headers, body).await {
        return refused;
    }
    let hold = match action.as_str() {
        "hold" => true,
        "release" => false,
        _ => return (StatusCode::NOT_FOUND, "no such action\n").into_response(),
    };
    let configured = state.configured.load();
    let Some(member) = configured.members.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no upstream named {name:?}\n"),
        )
            .into_response();
    };
    let changed = member.set_hold(hold);
    if changed {
        info!(operator = %operator.0, upstream = %name, hold, "console: upstream {}",
            if hold { "put on hold" } else { "released" });
        if !hold {
            // Its dispatchers look at once, not at their next second.
            state.store.ready_signal().notify_waiters();
        }
    }
    done(
        &headers,
        json!({"upstream": name, "hold": hold, "changed": changed}),
    )
}

/// `POST /api/sessions/{id}/disconnect`: the session answers what it has in
/// flight, sends unbind and closes.
pub async fn disconnect(
    State(state): State<ConsoleState>,
    Extension(operator): Extension<Operator>,
    Path(session_id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refused) = check_token(&state, &headers, body).await {
        return refused;
    }
    if !state.registry.disconnect(session_id) {
        return (
            StatusCode::NOT_FOUND,
            format!("no bound session {session_id}\n"),
        )
            .into_response();
    }
    info!(operator = %operator.0, session_id, "console: session disconnected");
    done(
        &headers,
        json!({"session_id": session_id, "disconnected": true}),
    )
}

/// `POST /api/reload`: the configuration file read again and applied; 200
/// with what changed, or 422 with the error naming the key, nothing changed.
pub async fn reload(
    State(state): State<ConsoleState>,
    Extension(operator): Extension<Operator>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(refused) = check_token(&state, &headers, body).await {
        return refused;
    }
    let by = format!("console ({})", operator.0);
    match state.reloader.reload(&by).await {
        Ok(report) => done(&headers, json!({"reloaded": true, "changes": report})),
        // A browser's form goes back to the overview, which shows the error.
        Err(_) if from_form(&headers) => Redirect::to("/").into_response(),
        Err(err) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"reloaded": false, "error": err.to_string()})),
        )
            .into_response(),
    }
}

/// The request carries the console's token, in its header or its form.
async fn check_token(
    state: &ConsoleState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Response> {
    let from_header = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = match from_header {
        Some(token) => Some(token),
        None => {
            let form = to_bytes(body, MAX_FORM).await.unwrap_or_default();
            url::form_urlencoded::parse(&form)
                .find(|(key, _)| key == "csrf")
                .map(|(_, value)| value.into_owned())
        }
    };
    if token.as_deref() == Some(state.csrf_token.as_str()) {
        return Ok(());
    }
    Err((
        StatusCode::FORBIDDEN,
        "403: the console's token is missing or wrong (the page's forms carry it; \
         scripts send X-Csrf-Token with /api/status's csrf_token)\n",
    )
        .into_response())
}

/// Back to the overview for a browser's form, JSON for a script.
fn done(headers: &HeaderMap, result: serde_json::Value) -> Response {
    if from_form(headers) {
        Redirect::to("/").into_response()
    } else {
        Json(result).into_response()
    }
}

/// Whether the request is a browser's form (not a script's call).
fn from_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
}
