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

impl LogFormat {
    /// The format a configuration that did not load asks for, so that the
    /// error saying why goes out as the operator's log shipper expects:
    /// `SMPP_BROKER__LOG__FORMAT`, else `[log] format` in the file's TOML,
    /// else text.
    pub fn asked_for(toml_text: Option<&str>, env: Option<&str>) -> LogFormat {
        let named = env.map(str::to_owned).or_else(|| {
            let table: toml::Table = toml::from_str(toml_text?).ok()?;
            Some(table.get("log")?.get("format")?.as_str()?.to_owned())
        });
        match named.as_deref().map(str::trim) {
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
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
    use super::LogFormat;
    use crate::config::test_support::{error, with_section};

    #[test]
    fn a_file_that_does_not_load_still_names_its_log_format() {
        let broken = "[log]\nformat = \"json\"\n[[accounts]]\nsystem_id = 1\n";
        assert_eq!(LogFormat::asked_for(Some(broken), None), LogFormat::Json);
        assert_eq!(LogFormat::asked_for(Some("[log]\n"), None), LogFormat::Text);
        assert_eq!(
            LogFormat::asked_for(Some("not toml ["), Some("json")),
            LogFormat::Json
        );
        assert_eq!(LogFormat::asked_for(None, Some("text")), LogFormat::Text);
    }

    #[test]
    fn log_errors_name_their_key() {
        let msg = error(&with_section("[log]\nlevel = \"info,[[[\""));
        assert!(
            msg.starts_with("test.toml: log.level: invalid filter directive"),
            "{msg}"
        );
    }
}
