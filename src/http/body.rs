//! Reading a request body within http.max_body_size and http.body_read_timeout:
//! a client cannot make the broker hold more than the limit, or hold it for longer
//! than the timeout.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use bytes::BytesMut;
use futures::StreamExt;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_size: usize,
    pub read_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes (http.max_body_size)")]
    TooLarge(usize),
    #[error("request body not complete within {} (http.body_read_timeout)",
        humantime_serde::re::humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("request body unreadable: {0}")]
    Broken(axum::Error),
}

/// The whole body. A declared Content-Length above the limit is refused before
/// anything is read; a body without one is counted as it arrives.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: BodyLimits,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_size as u64) {
        return Err(BodyError::TooLarge(limits.max_size));
    }
    let collect = async {
        let mut stream = body.into_data_stream();
        let mut collected = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(BodyError::Broken)?;
            if collected.len() + chunk.len() > limits.max_size {
                return Err(BodyError::TooLarge(limits.max_size));
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(collected.freeze())
    };
    tokio::time::timeout(limits.read_timeout, collect)
        .await
        .unwrap_or(Err(BodyError::TimedOut(limits.read_timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_size: 10,
        read_timeout: Duration::from_secs(5),
    };

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_read_whole() {
        let body = read_body(chunked(&[b"01234", b"56789"]), &HeaderMap::new(), LIMITS)
            .await
            .expect("at the limit");
        assert_eq!(&body[..], b"0123456789");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_whether_declared_or_not() {
        let past = read_body(chunked(&[b"01234", b"567890"]), &HeaderMap::new(), LIMITS).await;
        assert!(matches!(past, Err(BodyError::TooLarge(10))), "{past:?}");

        // Declared too long: refused before a byte is read (this body never ends).
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        let never = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let declared = read_body(never, &headers, LIMITS).await;
        assert!(
            matches!(declared, Err(BodyError::TooLarge(10))),
            "{declared:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let stalled = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"01"))])
            .chain(futures::stream::pending());
        let started = tokio::time::Instant::now();
        let result = read_body(Body::from_stream(stalled), &HeaderMap::new(), LIMITS).await;
        assert!(matches!(result, Err(BodyError::TimedOut(_))), "{result:?}");
        assert_eq!(started.elapsed(), LIMITS.read_timeout);
    }
}
