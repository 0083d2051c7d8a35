//! The fake's routes in each [`Mode`], and their handlers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use super::connections::ConnHandle;
use super::{ApiError, Fault, Mode, Shared};

type St = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let p = shared.mode.prefix();
    let mut r: Router<Arc<Shared>> = Router::new()
        .route(&format!("{p}/messages"), post(post_message))
        .route(
            &format!("{p}/messages/{{id}}"),
            get(get_message).delete(cancel_message),
        )
        .route(
            &format!("{p}/webhooks"),
            get(list_webhooks).post(upsert_webhook),
        )
        .route(&format!("{p}/webhooks/{{id}}"), delete(delete_webhook))
        .route(&format!("{p}/inbox"), get(inbox));
    r = match shared.mode {
        Mode::Local => r
            .route("/device", get(devices))
            .route("/message", post(post_message))
            .route("/message/{id}", get(get_message).delete(cancel_message))
            .route("/webhook", get(list_webhooks).post(upsert_webhook))
            .route("/webhook/{id}", delete(delete_webhook)),
        Mode::Cloud | Mode::Private => r.route(&format!("{p}/devices"), get(devices)),
    };
    r.fallback(fallback).with_state(shared)
}

async fn post_message(
    State(s): St,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    match s.next_post_fault() {
        None => s.post_message(&headers, query.as_deref(), &body),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            s.post_message(&headers, query.as_deref(), &body)
        }
        Some(Fault::Reset) => {
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response() // never sent
        }
        Some(Fault::AcceptThenReset) => {
            let resp = s.post_message(&headers, query.as_deref(), &body);
            conn.kill();
            resp // never sent
        }
        Some(Fault::AcceptThenStall(delay)) => {
            let resp = s.post_message(&headers, query.as_deref(), &body);
            tokio::time::sleep(delay).await;
            resp
        }
        Some(fault) => s.fault_response(&fault),
    }
}

async fn get_message(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.get_message(&headers, &id).unwrap_or_else(|e| s.error(e))
}

async fn cancel_message(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.cancel_message(&headers, &id)
        .unwrap_or_else(|e| s.error(e))
}

async fn list_webhooks(State(s): St, headers: HeaderMap) -> Response {
    s.list_webhooks(&headers).unwrap_or_else(|e| s.error(e))
}

async fn upsert_webhook(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    s.upsert_webhook(&headers, &body)
        .unwrap_or_else(|e| s.error(e))
}

async fn delete_webhook(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.delete_webhook(&headers, &id)
        .unwrap_or_else(|e| s.error(e))
}

async fn inbox(
    State(s): St,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    s.inbox(&headers, &query).unwrap_or_else(|e| s.error(e))
}

async fn devices(State(s): St, headers: HeaderMap) -> Response {
    s.devices(&headers).unwrap_or_else(|e| s.error(e))
}

async fn fallback(State(s): St) -> Response {
    s.error(ApiError {
        status: StatusCode::NOT_FOUND,
        message: "Not Found".to_owned(),
    })
}
