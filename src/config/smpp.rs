//! `[smpp]` and `[smpp.tls]`: the SMPP listeners and sessions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Largest PDU size an operator may configure (16 MiB).
const MAX_PDU_SIZE_LIMIT: u32 = 16 * 1024 * 1024;
const MIN_PDU_SIZE_LIMIT: u32 = 1024;

/// SMPP v3.4 system_id is a C-Octet String of at most 16 octets incl. NUL.
const MAX_SYSTEM_ID_LEN: usize = 15;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct SmppSettings {
    pub bind: SocketAddr,
    /// Our system_id in bind_*_resp.
    pub system_id: String,
    pub max_pdu_size: u32,
    pub max_connections: usize,
    /// Per session: inbound requests awaiting our response.
    pub max_in_flight: usize,
    /// Per session: deliver_sm sent and not yet acknowledged.
    pub deliver_window: usize,
    #[serde(with = "humantime_serde")]
    pub session_init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub inactivity_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Whether a receiver-bound session may send data_sm.
    pub data_sm_in_rx: bool,
    /// Answer failed binds with ESME_RINVSYSID / ESME_RINVPASWD instead of ESME_RBINDFAIL
    /// (helps ESME operators debug, but tells a prober which system_ids exist).
    pub detailed_bind_errors: bool,
    /// After a failed bind, the next bind from the same IP waits this long, doubling
    /// with every further failure up to `failed_bind_delay_max`.
    #[serde(with = "humantime_serde")]
    pub failed_bind_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub failed_bind_delay_max: Duration,
    pub tls: Option<TlsSettings>,
}

impl Default for SmppSettings {
    fn default() -> Self {
        SmppSettings {
            bind: SocketAddr::from(([0, 0, 0, 0], 2775)),
            system_id: "smpp-broker".to_owned(),
            max_pdu_size: 65536,
            max_connections: 10_000,
            max_in_flight: 1000,
            deliver_window: 10,
            session_init_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            inactivity_timeout: Duration::from_secs(5 * 60),
            shutdown_timeout: Duration::from_secs(10),
            data_sm_in_rx: false,
            detailed_bind_errors: false,
            failed_bind_delay: Duration::from_millis(500),
            failed_bind_delay_max: Duration::from_secs(30),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default = "default_tls_bind")]
    pub bind: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When neither `cert` nor `key` exists, write a self-signed pair there at
    /// startup (to try TLS; use a CA-signed certificate in production).
    #[serde(default)]
    pub generate: bool,
}

fn default_tls_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 2776))
}

impl SmppSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(message) = system_id_problem(&self.system_id) {
            return Err(invalid("smpp.system_id", message));
        }
        if !(MIN_PDU_SIZE_LIMIT..=MAX_PDU_SIZE_LIMIT).contains(&self.max_pdu_size) {
            return Err(invalid(
                "smpp.max_pdu_size",
                format!(
                    "must be between {MIN_PDU_SIZE_LIMIT} and {MAX_PDU_SIZE_LIMIT} (16 MiB), got {}",
                    self.max_pdu_size
                ),
            ));
        }
        for (key, value) in [
            ("smpp.max_connections", self.max_connections),
            ("smpp.max_in_flight", self.max_in_flight),
            ("smpp.deliver_window", self.deliver_window),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        // A zero timer would fire continuously (or never let a session
        // bind); shutdown_timeout may be zero, meaning "don't wait".
        for (key, value) in [
            ("smpp.session_init_timeout", self.session_init_timeout),
            ("smpp.enquire_link_interval", self.enquire_link_interval),
            ("smpp.response_timeout", self.response_timeout),
            ("smpp.inactivity_timeout", self.inactivity_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.bind == self.bind && tls.bind.port() != 0 {
                return Err(invalid(
                    "smpp.tls.bind",
                    format!("same address as smpp.bind ({})", self.bind),
                ));
            }
            // With generate, a missing pair is written at startup; half a pair
            // is refused there, by name.
            let to_generate = tls.generate && !tls.cert.exists() && !tls.key.exists();
            if !to_generate {
                check_readable("smpp.tls.cert", &tls.cert)?;
                check_readable("smpp.tls.key", &tls.key)?;
            }
        }
        Ok(())
    }
}

/// Why `id` is not a usable system_id, if it is not.
pub(super) fn system_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if !id.chars().all(|c| (' '..='~').contains(&c)) {
        return Some(format!("{id:?} must be printable ASCII"));
    }
    if id.len() > MAX_SYSTEM_ID_LEN {
        return Some(format!(
            "{id:?} is longer than {MAX_SYSTEM_ID_LEN} characters"
        ));
    }
    None
}

/// Fail early, naming the key, rather than when the TLS listener starts.
fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|err| invalid(key, format!("cannot read {}: {err}", path.display())))
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, parse, with_section};

    #[test]
    fn tls_bind_defaults_and_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "cert").expect("write");
        std::fs::write(&key, "key").expect("write");
        let text = with_section(&format!(
            "[smpp.tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
        let tls = parse(&text).expect("tls").smpp.tls.expect("tls set");
        assert_eq!(tls.bind, "0.0.0.0:2776".parse().expect("addr"));
        assert_eq!(tls.cert, cert);
        assert_eq!(tls.key, key);
    }

    #[test]
    fn smpp_errors_name_their_key() {
        assert!(error(&with_section("[smpp]\nmax_pdu_size = 1023"))
            .starts_with("test.toml: smpp.max_pdu_size: must be between 1024 and 16777216"));
        assert!(error(&with_section("[smpp]\nmax_pdu_size = 16777217"))
            .starts_with("test.toml: smpp.max_pdu_size: "));
        parse(&with_section("[smpp]\nmax_pdu_size = 16777216")).expect("16 MiB is allowed");
        for key in ["max_connections", "max_in_flight", "deliver_window"] {
            assert_eq!(
                error(&with_section(&format!("[smpp]\n{key} = 0"))),
                format!("test.toml: smpp.{key}: must be at least 1")
            );
        }
        for key in [
            "session_init_timeout",
            "enquire_link_interval",
            "response_timeout",
            "inactivity_timeout",
        ] {
            assert_eq!(
                error(&with_section(&format!("[smpp]\n{key} = \"0s\""))),
                format!("test.toml: smpp.{key}: must be longer than zero")
            );
        }
        parse(&with_section("[smpp]\nshutdown_timeout = \"0s\"")).expect("zero shutdown timeout");
        let msg = error(&with_section("[smpp]\nsystem_id = \"sixteen-chars-id\""));
        assert!(msg.starts_with("test.toml: smpp.system_id: "), "{msg}");
    }

    #[test]
    fn tls_generate_allows_a_missing_pair_only() {
        parse(&with_section(
            "[smpp.tls]\ncert = \"/nope.pem\"\nkey = \"/nope.key\"\ngenerate = true",
        ))
        .expect("written at startup");
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "cert").expect("write");
        let msg = error(&with_section(&format!(
            "[smpp.tls]\ncert = {:?}\nkey = \"/nope.key\"\ngenerate = true",
            cert.display().to_string()
        )));
        assert!(
            msg.starts_with("test.toml: smpp.tls.key: cannot read /nope.key"),
            "{msg}"
        );
    }

    #[test]
    fn tls_errors_name_their_key() {
        let msg = error(&with_section(
            "[smpp.tls]\ncert = \"/nope.pem\"\nkey = \"/nope.key\"",
        ));
        assert!(
            msg.starts_with(
                "test.toml: smpp.tls.cert: cannot read /nope.pem: No such file or directory"
            ),
            "{msg}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "cert").expect("write");
        let msg = error(&with_section(&format!(
            "[smpp.tls]\ncert = {:?}\nkey = \"/nope.key\"",
            cert.display().to_string()
        )));
        assert!(
            msg.starts_with("test.toml: smpp.tls.key: cannot read /nope.key"),
            "{msg}"
        );
        let msg = error(&with_section(&format!(
            "[smpp]\nbind = \"0.0.0.0:2776\"\n[smpp.tls]\ncert = {0:?}\nkey = {0:?}",
            cert.display().to_string()
        )));
        assert!(
            msg.starts_with("test.toml: smpp.tls.bind: same address as smpp.bind"),
            "{msg}"
        );
    }
}
