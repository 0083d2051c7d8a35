//! `[log]`: the format and filter of the broker's log.

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info,smpp_broker=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            return Err(invalid("log.level", format!("{err}: {:?}", self.level)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, with_section};

    #[test]
    fn log_errors_name_their_key() {
        let msg = error(&with_section("[log]\nlevel = \"info,[[[\""));
        assert!(
            msg.starts_with("test.toml: log.level: invalid filter directive"),
            "{msg}"
        );
    }
}
