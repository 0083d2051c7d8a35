//! `[store]`: which database holds the broker's state. A `path` is an SQLite
//! file, the embedded default, owned by one process; a `url` is a PostgreSQL
//! database several broker nodes share. The two are exclusive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError, Secret};

/// Where the SQLite file is when neither `path` nor `url` is given.
const DEFAULT_PATH: &str = "data/broker.db";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The SQLite file; absent: data/broker.db (unless `url` is given).
    pub path: Option<PathBuf>,
    /// `postgres://user:password@host:port/database`: selects PostgreSQL. A
    /// secret: it may hold the password.
    pub url: Option<Secret>,
    /// PostgreSQL's pool size on this node.
    pub max_connections: u32,
    /// This node's name among the nodes on one PostgreSQL database; absent:
    /// the host's name. Each node needs its own.
    pub node_id: Option<String>,
    /// PostgreSQL: how often this node writes its heartbeat and renews its
    /// leases. A node not seen for three times this long is dead: another
    /// node takes its claims, deliveries and leases over.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a write waits: for a lock someone else holds (SQLite: an
    /// operator's sqlite3, a backup), or for a connection and its transaction
    /// (PostgreSQL), before the request is answered ESME_RSYSERR.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: None,
            url: None,
            max_connections: 16,
            node_id: None,
            heartbeat: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreSettings {
    /// An SQLite file, with the other keys at their defaults.
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreSettings {
        StoreSettings {
            path: Some(path.into()),
            ..StoreSettings::default()
        }
    }

    /// The SQLite file (meaningless when `url` selects PostgreSQL).
    pub fn sqlite_path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(DEFAULT_PATH))
    }

    /// This node's name: `node_id`, else the host's name.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(host_name)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid("store.path", "must not be empty"));
        }
        if let Some(url) = &self.url {
            if self.path.is_some() {
                return Err(invalid(
                    "store.url",
                    "url (PostgreSQL) and path (SQLite) are exclusive: give one",
                ));
            }
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "store.url",
                    "must be a postgres:// URL (postgres://user:password@host:port/database)",
                ));
            }
        }
        if self.max_connections < 2 {
            // The writer holds one while it commits; reads need another.
            return Err(invalid("store.max_connections", "must be at least 2"));
        }
        if self.heartbeat < Duration::from_millis(100) || self.heartbeat > Duration::from_secs(600)
        {
            return Err(invalid("store.heartbeat", "must be between 100ms and 10m"));
        }
        if self.node_id.as_ref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("store.node_id", "must not be empty"));
        }
        Ok(())
    }
}

/// The host's name (Linux), or "node" where it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".to_owned())
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
        assert_eq!(
            error(&with_section(
                "[store]\npath = \"a.db\"\nurl = \"postgres://u:pw@db/smpp\""
            )),
            "test.toml: store.url: url (PostgreSQL) and path (SQLite) are exclusive: give one"
        );
        let wrong = error(&with_section("[store]\nurl = \"mysql://u:pw@db/smpp\""));
        assert!(wrong.starts_with("test.toml: store.url: must be a postgres:// URL"));
        assert!(
            !wrong.contains("pw"),
            "the URL may hold a password: {wrong}"
        );
        assert_eq!(
            error(&with_section("[store]\nmax_connections = 1")),
            "test.toml: store.max_connections: must be at least 2"
        );
        assert_eq!(
            error(&with_section("[store]\nnode_id = \" \"")),
            "test.toml: store.node_id: must not be empty"
        );
    }
}
