//! `[messages]`: validity, assembly and retention of accepted messages.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// How accepted messages are kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct MessageSettings {
    /// Validity of a message whose submit_sm gave none.
    #[serde(with = "humantime_serde")]
    pub default_validity: Duration,
    /// A long message whose parts have not all arrived after this long fails.
    #[serde(with = "humantime_serde")]
    pub assembly_timeout: Duration,
    /// A receipt or incoming message no receiver took within this long is dropped.
    #[serde(with = "humantime_serde")]
    pub undelivered_retention: Duration,
    /// A message final (delivered, failed, expired, …) this long is deleted, with
    /// its outbox row: the database does not grow without bound.
    #[serde(with = "humantime_serde")]
    pub final_retention: Duration,
}

impl Default for MessageSettings {
    fn default() -> Self {
        MessageSettings {
            default_validity: Duration::from_secs(48 * 3600),
            assembly_timeout: Duration::from_secs(10 * 60),
            undelivered_retention: Duration::from_secs(48 * 3600),
            final_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl MessageSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // A waiting receipt reads its message; the message must outlive it.
        if self.final_retention < self.undelivered_retention {
            return Err(invalid(
                "messages.final_retention",
                format!(
                    "must be at least messages.undelivered_retention ({})",
                    humantime_serde::re::humantime::format_duration(self.undelivered_retention)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, parse, with_section};

    #[test]
    fn final_messages_outlive_waiting_receipts() {
        let msg = error(&with_section(
            "[messages]\nundelivered_retention = \"72h\"\nfinal_retention = \"48h\"",
        ));
        assert!(
            msg.starts_with("test.toml: messages.final_retention: must be at least"),
            "{msg}"
        );
        parse(&with_section("[messages]\nfinal_retention = \"30d\"")).expect("longer is fine");
    }
}
