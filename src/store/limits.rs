//! Limits the store enforces on every backend, from the configuration.

use std::collections::HashMap;
use std::time::Duration;

use super::UpstreamLimits;
use crate::config::{AccountSettings, Settings};

/// Limits the writer enforces, since it alone sees every change.
#[derive(Debug, Clone)]
pub struct WriterLimits {
    /// Waiting messages (not yet handed upstream) per account; absent = unlimited.
    pub max_waiting: HashMap<String, usize>,
    pub assembly_timeout: Duration,
    /// Receipts and incoming messages kept per account for its ESMEs, at most;
    /// absent = `default_max_undelivered`.
    pub max_undelivered: HashMap<String, usize>,
    /// The same limit for an account that `max_undelivered` does not name.
    pub default_max_undelivered: usize,
    /// How long a receipt or incoming message waits for an ESME at most.
    pub undelivered_retention: Duration,
    /// How long a final message is kept before it is deleted.
    pub final_retention: Duration,
    /// The upstreams' limits, written to `upstream_limits` at startup.
    pub upstream_limits: Vec<UpstreamLimits>,
    /// The WAL's size past which the writer checkpoints it itself (bound_wal).
    pub wal_limit: u64,
}

impl WriterLimits {
    /// The limits `settings` set.
    pub fn of(settings: &Settings) -> WriterLimits {
        let per_account = |limit: fn(&AccountSettings) -> usize| {
            settings
                .accounts
                .iter()
                .map(|a| (a.system_id.clone(), limit(a)))
                .collect()
        };
        WriterLimits {
            wal_limit: super::sqlite::WAL_LIMIT,
            max_waiting: per_account(|a| a.max_queued),
            assembly_timeout: settings.messages.assembly_timeout,
            max_undelivered: per_account(|a| a.max_undelivered),
            default_max_undelivered: crate::config::DEFAULT_MAX_UNDELIVERED,
            undelivered_retention: settings.messages.undelivered_retention,
            final_retention: settings.messages.final_retention,
            upstream_limits: settings
                .upstreams
                .iter()
                .map(|u| UpstreamLimits {
                    upstream: u.name.clone(),
                    daily_limit: u.daily_limit,
                    monthly_limit: u.monthly_limit,
                    timezone: u
                        .limits_timezone
                        .clone()
                        .unwrap_or_else(|| "UTC".to_owned()),
                })
                .collect(),
        }
    }

    /// The most receipts and incoming messages `system_id` keeps for its ESMEs.
    pub fn max_undelivered_of(&self, system_id: &str) -> usize {
        self.max_undelivered
            .get(system_id)
            .copied()
            .unwrap_or(self.default_max_undelivered)
    }

    /// No per-account limits, with the durations the configuration defaults to.
    #[cfg(test)]
    pub fn for_tests() -> WriterLimits {
        WriterLimits {
            max_waiting: HashMap::new(),
            assembly_timeout: Duration::from_secs(10 * 60),
            max_undelivered: HashMap::new(),
            default_max_undelivered: 25_000,
            undelivered_retention: Duration::from_secs(48 * 3600),
            final_retention: Duration::from_secs(7 * 24 * 3600),
            upstream_limits: Vec::new(),
            wal_limit: crate::store::sqlite::WAL_LIMIT,
        }
    }
}
