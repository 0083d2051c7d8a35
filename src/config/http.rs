//! `[http]`: the HTTP listener (health, metrics, webhooks) and its limits.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Bounds of http.max_body_size: webhook events are a few KiB.
const MIN_HTTP_BODY_LIMIT: usize = 1024;
const MAX_HTTP_BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub public_url: Option<String>,
    /// Open HTTP connections at most (lowered at startup when the open-file
    /// limit cannot hold them next to the SMPP connections).
    pub max_connections: usize,
    /// A request's head must be complete this long after the connection opened,
    /// or after the first byte of a later request on it.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request's body must be complete this long after its head.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request body in bytes; a larger one gets 413.
    pub max_body_size: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body_size: 64 * 1024,
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "http.public_url",
                    format!("must start with http:// or https://, got {url:?}"),
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        for (key, value) in [
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.body_read_timeout", self.body_read_timeout),
            ("http.idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if !(MIN_HTTP_BODY_LIMIT..=MAX_HTTP_BODY_LIMIT).contains(&self.max_body_size) {
            return Err(invalid(
                "http.max_body_size",
                format!(
                    "must be between {MIN_HTTP_BODY_LIMIT} and {MAX_HTTP_BODY_LIMIT} (16 MiB), got {}",
                    self.max_body_size
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::{error, parse_env, with_section, BASE};

    #[test]
    fn http_limit_errors_name_their_key() {
        for (line, expected) in [
            (
                "max_connections = 0",
                "test.toml: http.max_connections: must be at least 1",
            ),
            (
                "header_read_timeout = \"0s\"",
                "test.toml: http.header_read_timeout: must be longer than zero",
            ),
            (
                "body_read_timeout = \"0s\"",
                "test.toml: http.body_read_timeout: must be longer than zero",
            ),
            (
                "idle_timeout = \"0s\"",
                "test.toml: http.idle_timeout: must be longer than zero",
            ),
            (
                "max_body_size = 1023",
                "test.toml: http.max_body_size: must be between 1024 and 16777216 (16 MiB), got 1023",
            ),
            (
                "max_body_size = 16777217",
                "test.toml: http.max_body_size: must be between 1024 and 16777216 (16 MiB), got 16777217",
            ),
        ] {
            assert_eq!(error(&with_section(&format!("[http]\n{line}"))), expected);
        }
        let msg = error(&with_section("[http]\nidle_timeout = \"soon\""));
        assert!(msg.starts_with("test.toml: http.idle_timeout: "), "{msg}");
    }

    #[test]
    fn http_limits_come_from_the_environment() {
        let s = parse_env(
            BASE,
            &[
                ("SMPP_BROKER__HTTP__MAX_CONNECTIONS", "32"),
                ("SMPP_BROKER__HTTP__HEADER_READ_TIMEOUT", "2s"),
                ("SMPP_BROKER__HTTP__BODY_READ_TIMEOUT", "3s"),
                ("SMPP_BROKER__HTTP__IDLE_TIMEOUT", "4s"),
                ("SMPP_BROKER__HTTP__MAX_BODY_SIZE", "4096"),
            ],
        )
        .expect("http overrides");
        assert_eq!(s.http.max_connections, 32);
        assert_eq!(s.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(s.http.body_read_timeout, Duration::from_secs(3));
        assert_eq!(s.http.idle_timeout, Duration::from_secs(4));
        assert_eq!(s.http.max_body_size, 4096);
    }

    #[test]
    fn public_url_errors_name_their_key() {
        let msg = error(&with_section("[http]\npublic_url = \"sms.example.com\""));
        assert!(
            msg.starts_with("test.toml: http.public_url: must start with http://"),
            "{msg}"
        );
    }
}
