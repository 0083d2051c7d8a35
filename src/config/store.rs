//! `[store]`: where the database lives and how long a write waits for a lock.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// How long a write waits for a lock someone else holds (an operator's sqlite3,
    /// a backup) before the request is answered ESME_RSYSERR.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: PathBuf::from("data/broker.db"),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, with_section};

    #[test]
    fn store_errors_name_their_key() {
        assert_eq!(
            error(&with_section("[store]\npath = \"\"")),
            "test.toml: store.path: must not be empty"
        );
    }
}
