//! The HTTP side of an smsgate upstream: a tower service around reqwest. The
//! throttling layers go around it in `stack`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::Service;

use super::smsgate::{classify_send, classify_status, SmsGateTarget};
use super::{Call, Reply};
use crate::config::Secret;

#[derive(Clone)]
pub struct SmsGateClient {
    http: reqwest::Client,
    target: Arc<SmsGateTarget>,
    username: Arc<str>,
    password: Secret,
}

impl SmsGateClient {
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
