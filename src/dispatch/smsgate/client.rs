//! The HTTP side of an smsgate upstream: a tower service around reqwest, and the
//! webhook and inbox calls. The throttle goes around it in
//! `dispatch::upstream::throttled`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::Service;

use super::api::{classify_send, classify_status, SmsGateTarget};
use crate::config::{Secret, UpstreamSettings};
use crate::dispatch::upstream::{Call, Reply};
use crate::time::format_rfc3339;

#[derive(Clone)]
pub struct SmsGateClient {
    http: reqwest::Client,
    target: Arc<SmsGateTarget>,
    username: Arc<str>,
    password: Secret,
}

impl SmsGateClient {
    pub fn from_settings(settings: &UpstreamSettings) -> SmsGateClient {
        SmsGateClient::new(
            SmsGateTarget::from_settings(settings),
            settings.username.as_deref().unwrap_or_default(),
            settings.password.clone().unwrap_or_else(|| Secret::new("")),
        )
    }

    pub fn new(target: SmsGateTarget, username: &str, password: Secret) -> SmsGateClient {
        let http = reqwest::Client::builder()
            .user_agent(concat!("smpp-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        SmsGateClient {
            http,
            target: Arc::new(target),
            username: username.into(),
            password,
        }
    }
}

/// The events the broker registers, with the short names in their ids.
pub const WEBHOOK_EVENTS: [(&str, &str); 6] = [
    ("sms:sent", "sent"),
    ("sms:delivered", "delivered"),
    ("sms:failed", "failed"),
    ("sms:cancelled", "cancelled"),
    ("sms:received", "received"),
    ("sms:data-received", "data-received"),
];

impl SmsGateClient {
    /// Registers one webhook per event, with fixed ids (`smpp-broker-{upstream}-…`,
    /// so a POST replaces rather than adds), pointing at `{public_url}/webhooks/
    /// {upstream}`; then deletes registrations of ours that are not wanted any
    /// more. Returns the ids registered.
    pub async fn register_webhooks(
        &self,
        upstream: &str,
        public_url: &str,
    ) -> Result<Vec<String>, ApiError> {
        let base = &self.target.base_url;
        let url = format!("{}/webhooks/{upstream}", public_url.trim_end_matches('/'));
        let prefix = format!("smpp-broker-{upstream}-");
        let mut wanted = Vec::new();
        for (event, short) in WEBHOOK_EVENTS {
            let id = format!("{prefix}{short}");
            let mut body = serde_json::json!({"id": id, "url": url, "event": event});
            if let Some(device) = &self.target.device_id {
                body["deviceId"] = serde_json::json!(device);
            }
            self.api_call(self.http.post(format!("{base}/webhooks")).json(&body))
                .await?;
            wanted.push(id);
        }
        let listed: Vec<serde_json::Value> = self
            .api_call(self.http.get(format!("{base}/webhooks")))
            .await?
            .json()
            .await?;
        // Ours, for this upstream: our id prefix and a URL that ends at this
        // upstream's path (another upstream's name may extend this one's:
        // "cloud" and "cloud-b" on one account).
        let path = format!("/webhooks/{upstream}");
        fn ours<'a>(w: &'a serde_json::Value, prefix: &str, path: &str) -> Option<&'a str> {
            let id = w.get("id")?.as_str()?;
            let url = w.get("url")?.as_str()?;
            (id.starts_with(prefix) && url.ends_with(path)).then_some(id)
        }
        for stale in listed
            .iter()
            .filter_map(|w| ours(w, &prefix, &path))
            .filter(|id| !wanted.iter().any(|w| w == id))
        {
            // Not checked: one already gone is as good as deleted.
            self.http
                .delete(format!("{base}/webhooks/{stale}"))
                .basic_auth(&*self.username, Some(self.password.expose()))
                .send()
                .await?;
        }
        Ok(wanted)
    }
}

/// One entry of `GET /inbox`. For an SMS, `contentPreview` is the whole text.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    pub id: String,
    pub sender: String,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub content_preview: String,
    #[serde(default)]
    pub sim_number: Option<i64>,
    /// RFC 3339 text (or, from some servers, Unix milliseconds).
    pub created_at: serde_json::Value,
}

/// Entries `GET /inbox` gives at most per page.
pub const INBOX_PAGE: usize = 500;

impl SmsGateClient {
    /// One page of the SMS (text) received between `from` and `to` (Unix ms).
    pub async fn inbox(
        &self,
        from: i64,
        to: i64,
        offset: usize,
    ) -> Result<Vec<InboxItem>, ApiError> {
        let mut query = vec![
            ("type", "SMS".to_owned()),
            ("from", format_rfc3339(from)),
            ("to", format_rfc3339(to)),
            ("limit", INBOX_PAGE.to_string()),
            ("offset", offset.to_string()),
        ];
        if let Some(device) = &self.target.device_id {
            query.push(("deviceId", device.clone()));
        }
        let inbox = self.http.get(format!("{}/inbox", self.target.base_url));
        Ok(self.api_call(inbox.query(&query)).await?.json().await?)
    }

    /// Sends `request` with the upstream's credentials; an answer other than 2xx
    /// is an error carrying the upstream's text.
    async fn api_call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let response = request
            .basic_auth(&*self.username, Some(self.password.expose()))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(ApiError::Refused(status.as_u16(), text));
        }
        Ok(response)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {0}: {1}")]
    Refused(u16, String),
}

impl Service<Call> for SmsGateClient {
    type Response = Reply;
    type Error = reqwest::Error;
    type Future = BoxFuture<'static, Result<Reply, reqwest::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let auth = |request: reqwest::RequestBuilder| {
                request.basic_auth(&*this.username, Some(this.password.expose()))
            };
            match call {
                Call::Send(message) => {
                    let body = this.target.message_body(&message);
                    let response = auth(this.http.post(this.target.send_url()))
                        .json(&body)
                        .send()
                        .await?;
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = response.text().await?;
                    Ok(Reply::Send(classify_send(
                        status,
                        retry_after.as_deref(),
                        &text,
                        &message.upstream_key(),
                    )))
                }
                Call::Status(upstream_id) => {
                    let response = auth(this.http.get(this.target.status_url(&upstream_id)))
                        .send()
                        .await?;
                    let status = response.status().as_u16();
                    let text = response.text().await?;
                    Ok(Reply::Status(classify_status(status, &text)))
                }
            }
        })
    }
}
