//! Helpers for the configuration's tests, shared by the section files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::smpp::pdu::BindKind;
use crate::text::{DefaultAlphabet, LongIncoming};

/// Minimal valid configuration: one upstream and one account, last so
/// that tests can append keys to `accounts[0]`.
pub(super) const BASE: &str = r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"

[[accounts]]
system_id = "demo"
password = "demo1234"
upstream = "sandbox"
"#;

pub(super) fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn parse(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, "test.toml", no_env())
}

pub(super) fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, "test.toml", env(pairs))
}

/// The error message for `text`, which must be rejected.
pub(super) fn error(text: &str) -> String {
    match parse(text) {
        Ok(settings) => panic!("accepted: {settings:?}"),
        Err(err) => err.to_string(),
    }
}

pub(super) fn error_env(text: &str, pairs: &[(&str, &str)]) -> String {
    match parse_env(text, pairs) {
        Ok(settings) => panic!("accepted: {settings:?}"),
        Err(err) => err.to_string(),
    }
}

/// BASE with `extra` appended to `accounts[0]`.
pub(super) fn account_with(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

/// `section` (e.g. "[smpp]\nbind = ...") followed by BASE.
pub(super) fn with_section(section: &str) -> String {
    format!("{section}\n{BASE}")
}

/// BASE with an smsgate upstream "phone" whose extra lines are `keys`.
pub(super) fn smsgate(keys: &str) -> String {
    format!("[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\n{keys}\n{BASE}")
}

pub(super) fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    // A fixed salt keeps the test deterministic and needs no RNG feature.
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// Settings with every key set, optional ones included (not a valid
/// configuration: the upstream has the keys of both kinds). The struct
/// literals have no `..`, so a new field does not compile until it is given a
/// value here, and src/config/env.rs then checks STRING_KEYS against it.
pub(super) fn every_key_set() -> Settings {
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let secs = Duration::from_secs;
    Settings {
        smpp: SmppSettings {
            bind: addr(2775),
            system_id: "broker".to_owned(),
            max_pdu_size: 4096,
            max_connections: 1,
            max_in_flight: 1,
            deliver_window: 1,
            session_init_timeout: secs(1),
            enquire_link_interval: secs(1),
            response_timeout: secs(1),
            inactivity_timeout: secs(1),
            shutdown_timeout: secs(1),
            data_sm_in_rx: true,
            detailed_bind_errors: true,
            failed_bind_delay: secs(1),
            failed_bind_delay_max: secs(1),
            tls: Some(TlsSettings {
                bind: addr(2776),
                cert: PathBuf::from("cert.pem"),
                key: PathBuf::from("key.pem"),
                generate: true,
            }),
        },
        http: HttpSettings {
            bind: addr(8080),
            public_url: Some("https://sms.example.com".to_owned()),
            max_connections: 1,
            header_read_timeout: secs(1),
            body_read_timeout: secs(1),
            idle_timeout: secs(1),
            max_body_size: 1024,
        },
        admin: AdminSettings {
            bind: addr(8081),
            username: Some("admin".to_owned()),
            password_hash: Some(Secret::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")),
        },
        store: StoreSettings {
            path: Some(PathBuf::from("broker.db")),
            url: Some(Secret::new("postgres://broker:pw@db/smpp")),
            max_connections: 4,
            node_id: Some("node-a".to_owned()),
            heartbeat: secs(1),
            busy_timeout: secs(1),
        },
        messages: MessageSettings {
            default_validity: secs(1),
            assembly_timeout: secs(1),
            undelivered_retention: secs(1),
            final_retention: secs(1),
        },
        log: LogSettings {
            format: LogFormat::Json,
            level: "info".to_owned(),
        },
        accounts: vec![AccountSettings {
            system_id: "demo".to_owned(),
            password: Some(Secret::new("demo1234")),
            password_hash: Some(Secret::new("$argon2id$...")),
            upstream: Some("phone".to_owned()),
            bind_types: BindKind::ALL.to_vec(),
            max_sessions: 1,
            throughput: 1.0,
            max_queued: 1,
            max_undelivered: 1,
            receive_numbers: vec!["+15550100".to_owned()],
            default_alphabet: DefaultAlphabet::default(),
            long_incoming: LongIncoming::default(),
        }],
        upstreams: vec![UpstreamSettings {
            name: "phone".to_owned(),
            kind: UpstreamKind::Smsgate,
            hold: true,
            rate: Some(1.0),
            max_in_flight: Some(1),
            request_timeout: secs(1),
            retry_schedule: vec![secs(1).into()],
            pause_cooldown: secs(1),
            check_after: secs(1),
            check_interval: secs(1),
            daily_limit: Some(1),
            monthly_limit: Some(1),
            limits_timezone: Some("UTC".to_owned()),
            mode: Some(SmsGateMode::Private),
            base_url: Some("https://sms.example.com".to_owned()),
            username: Some("user".to_owned()),
            password: Some(Secret::new("password")),
            device_id: Some("device".to_owned()),
            sim_number: Some(1),
            signing_key: Some(Secret::new("key")),
            skip_phone_validation: Some(true),
            data_port: Some(53739),
            inbox_interval: Some(secs(1)),
            sent_after: Some(secs(1)),
            delivered_after: Some(secs(1)),
            failure_ratio: Some(0.5),
        }],
        routes: vec![RouteSettings {
            name: "route".to_owned(),
            prefix: Some("+1".to_owned()),
            accounts: vec!["demo".to_owned()],
            upstreams: vec!["phone".to_owned()],
            weights: Some(vec![1]),
            sticky: true,
            fallback: Vec::new(),
        }],
    }
}
