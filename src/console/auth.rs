//! HTTP Basic in front of the console when `admin.username` and
//! `admin.password_hash` are set. The password is checked against its argon2
//! hash, one verification at a time; wrong credentials get 401 and make the
//! address wait before its next attempt, as failed binds do (smpp/throttle.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::config::Secret;
use crate::smpp::auth::{constant_time_eq, verify_with};
use crate::smpp::throttle::{BindOutcome, BindThrottle};

/// Who made a request: the login's username, or the address of a console
/// without a login (loopback). Actions are logged with it.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

/// The console's one login.
pub struct Credentials {
    username: String,
    password_hash: Secret,
    /// Failed logins per address: the next waits, doubling up to a cap.
    throttle: BindThrottle,
    /// argon2 needs its memory (19 MiB): one verification at a time.
    verifying: Semaphore,
}

impl Credentials {
    pub fn new(username: &str, password_hash: &Secret) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password_hash: password_hash.clone(),
            throttle: BindThrottle::new(Duration::from_millis(500), Duration::from_secs(30)),
            verifying: Semaphore::new(1),
        }
    }

    /// Whether the request's Authorization header names this login.
    async fn check(&self, authorization: Option<&str>) -> bool {
        let Some((username, password)) = authorization.and_then(basic) else {
            return false;
        };
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let hash = self.password_hash.expose().to_owned();
        let verified =
            tokio::task::spawn_blocking(move || verify_with(&hash, &password, &mut Vec::new()))
                .await
                .unwrap_or(false);
        // Both compared, whichever fails, so that timing tells nothing.
        verified & constant_time_eq(&username, &self.username)
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Lets the request through when no login is configured (a loopback
/// console) or when its credentials are right; else 401.
pub async fn require(
    State(credentials): State<Option<Arc<Credentials>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(credentials) = credentials else {
        request
            .extensions_mut()
            .insert(Operator(format!("{peer} (no login)")));
        return next.run(request).await;
    };
    let attempt = credentials.throttle.admit(peer.ip()).await;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if credentials.check(authorization).await {
        attempt.end(BindOutcome::Bound);
        let operator = Operator(format!("{} from {peer}", credentials.username));
        request.extensions_mut().insert(operator);
        return next.run(request).await;
    }
    attempt.end(BindOutcome::Refused);
    if authorization.is_some() {
        warn!(%peer, "console login refused: wrong username or password");
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"smpp-broker\"")],
        "401: the console needs admin.username and its password\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:s3cret:x")
        );
        assert_eq!(
            basic(&header),
            Some(("admin".to_owned(), "s3cret:x".to_owned()))
        );
        assert_eq!(basic("Bearer abc"), None);
        assert_eq!(basic("Basic !!!"), None);
    }
}
