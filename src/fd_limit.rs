//! The open-file limit (RLIMIT_NOFILE). `serve` raises the soft limit to the hard
//! one at startup; the connection caps of both listeners are then fitted under
//! it, so that neither listener can take the descriptors that the other, the
//! database and the upstream connections need (a full HTTP port once made SMPP
//! accepts fail with EMFILE).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use tracing::{info, warn};

use crate::config::{Settings, UpstreamKind};

/// Descriptors kept for everything that is not a client connection: stdio, the
/// runtime, the listeners and a connection each listener accepts only to close,
/// SQLite's files for its three connections, a lock file, TLS files at startup.
const BASE_RESERVE: u64 = 64;

/// The HTTP port gets at most this share of the descriptors left for client
/// connections; SMPP gets the rest.
const HTTP_SHARE_DIVISOR: u64 = 4;

/// RLIMIT_NOFILE; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

pub fn current() -> OpenFileLimit {
    let limit = getrlimit(Resource::Nofile);
    OpenFileLimit {
        soft: limit.current,
        hard: limit.maximum,
    }
}

/// Raises the soft limit to the hard one; the limit before and after.
pub fn raise_soft_to_hard() -> Result<(OpenFileLimit, OpenFileLimit), std::io::Error> {
    let before = current();
    if before.soft != before.hard {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: before.hard,
                maximum: before.hard,
            },
        )?;
    }
    Ok((before, current()))
}

/// Descriptors that are not for client connections, for these settings: the
/// base reserve and two per request an smsgate upstream may have in flight (the
/// request's connection and a pooled one).
pub fn reserve(settings: &Settings) -> u64 {
    let upstream_connections: u64 = settings
        .upstreams
        .iter()
        .filter(|u| u.kind == UpstreamKind::Smsgate)
        .map(|u| 2 * u.max_in_flight() as u64)
        .sum();
    BASE_RESERVE + upstream_connections + CONSOLE_CONNECTIONS
}

/// The console's connections at most (app.rs serves it with this cap).
pub const CONSOLE_CONNECTIONS: u64 = 32;

/// The connection caps the listeners use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub smpp: usize,
    pub http: usize,
}

/// The configured caps, lowered so that both together stay under `soft_limit`
/// less `reserve`; HTTP never gets more than a quarter of what is left.
pub fn connection_caps(
    soft_limit: Option<u64>,
    reserve: u64,
    smpp_configured: usize,
    http_configured: usize,
) -> ConnectionCaps {
    let Some(limit) = soft_limit else {
        return ConnectionCaps {
            smpp: smpp_configured,
            http: http_configured,
        };
    };
    let for_connections = limit.saturating_sub(reserve);
    let fit = |configured: usize, room: u64| {
        usize::try_from(room)
            .unwrap_or(usize::MAX)
            .clamp(1, configured.max(1))
    };
    let http = fit(http_configured, for_connections / HTTP_SHARE_DIVISOR);
    let smpp = fit(smpp_configured, for_connections.saturating_sub(http as u64));
    ConnectionCaps { smpp, http }
}

/// The caps for `settings` under the current soft limit, logged.
pub fn caps_for(settings: &Settings) -> ConnectionCaps {
    let limit = current();
    let reserve = reserve(settings);
    let (smpp_configured, http_configured) =
        (settings.smpp.max_connections, settings.http.max_connections);
    let caps = connection_caps(limit.soft, reserve, smpp_configured, http_configured);
    let soft = limit.soft.map_or("unlimited".to_owned(), |n| n.to_string());
    if caps.smpp < smpp_configured || caps.http < http_configured {
        warn!(
            open_files = %soft,
            reserve,
            smpp_max_connections = caps.smpp,
            http_max_connections = caps.http,
            "the open-file limit cannot hold smpp.max_connections and http.max_connections: \
             lowered to fit (raise the hard limit, ulimit -n, to keep them)"
        );
    } else {
        info!(
            open_files = %soft,
            reserve,
            smpp_max_connections = caps.smpp,
            http_max_connections = caps.http,
            "connection caps fit the open-file limit"
        );
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_limit_keeps_the_configured_caps() {
        assert_eq!(
            connection_caps(Some(65536), 64, 10_000, 256),
            ConnectionCaps {
                smpp: 10_000,
                http: 256
            }
        );
        assert_eq!(
            connection_caps(None, 64, 10_000, 256),
            ConnectionCaps {
                smpp: 10_000,
                http: 256
            }
        );
    }

    #[test]
    fn a_low_limit_is_shared_out_and_never_exceeded() {
        // The limit of the measurement in issue 11: 1,024.
        let caps = connection_caps(Some(1024), 64, 10_000, 256);
        assert_eq!(
            caps,
            ConnectionCaps {
                smpp: 720,
                http: 240
            }
        );
        assert!(caps.smpp as u64 + caps.http as u64 + 64 <= 1024);
        // An operator's smaller HTTP cap leaves the rest to SMPP.
        assert_eq!(
            connection_caps(Some(1024), 64, 10_000, 16),
            ConnectionCaps {
                smpp: 944,
                http: 16
            }
        );
        // Below the reserve each listener still takes one connection.
        assert_eq!(
            connection_caps(Some(32), 64, 10_000, 256),
            ConnectionCaps { smpp: 1, http: 1 }
        );
    }

    #[test]
    fn smsgate_upstreams_widen_the_reserve() {
        let settings = Settings::from_toml(
            "[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\nusername = \"u\"\n\
             password = \"p\"\nmax_in_flight = 8\n\
             [[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n",
            "test.toml",
            std::iter::empty(),
        )
        .expect("valid");
        assert_eq!(reserve(&settings), BASE_RESERVE + CONSOLE_CONNECTIONS + 16);
    }

    #[test]
    fn the_soft_limit_can_be_raised_to_the_hard_one() {
        // The test process's own limit: raising is allowed, then it is a no-op.
        let (_, after) = raise_soft_to_hard().expect("raise");
        assert_eq!(after.soft, after.hard);
        assert_eq!(raise_soft_to_hard().expect("again"), (after, after));
    }
}
