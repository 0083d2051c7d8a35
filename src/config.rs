//! Typed configuration: TOML file (or the embedded default), overridden by
//! `SMPP_BROKER__SECTION__KEY` environment variables, validated at startup.
//!
//! Every error names the offending key, and secrets never reach `Debug`,
//! `Display` or error messages.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::smpp::pdu::BindKind;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SMPP_BROKER__";

/// Name used in error messages for the embedded default configuration.
const DEFAULT_ORIGIN: &str = "config/default.toml (built-in)";

/// Largest PDU size an operator may configure (16 MiB).
const MAX_PDU_SIZE_LIMIT: u32 = 16 * 1024 * 1024;
const MIN_PDU_SIZE_LIMIT: u32 = 1024;

/// Bounds of http.max_body_size: webhook events are a few KiB.
const MIN_HTTP_BODY_LIMIT: usize = 1024;
const MAX_HTTP_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// SMPP v3.4 system_id is a C-Octet String of at most 16 octets incl. NUL.
const MAX_SYSTEM_ID_LEN: usize = 15;
/// SMPP v3.4 password is a C-Octet String of at most 9 octets incl. NUL.
const MAX_PASSWORD_LEN: usize = 8;

/// Keys whose values are strings in the schema: an environment override for
/// them is kept verbatim, so `PASSWORD=12345678` stays a string instead of
/// becoming a TOML integer (which would then fail to deserialize).
const STRING_KEYS: &[&str] = &[
    "bind",
    "system_id",
    "password",
    "password_hash",
    "upstream",
    "name",
    "kind",
    "path",
    "cert",
    "key",
    "public_url",
    "format",
    "level",
    "session_init_timeout",
    "enquire_link_interval",
    "response_timeout",
    "inactivity_timeout",
    "shutdown_timeout",
    "failed_bind_delay",
    "failed_bind_delay_max",
    "default_validity",
    "assembly_timeout",
    "undelivered_retention",
    "final_retention",
    "default_alphabet",
    "long_incoming",
    "busy_timeout",
    "header_read_timeout",
    "body_read_timeout",
    "idle_timeout",
    "mode",
    "base_url",
    "username",
    "device_id",
    "signing_key",
    "request_timeout",
    "pause_cooldown",
    "check_after",
    "check_interval",
    "inbox_interval",
    "sent_after",
    "delivered_after",
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub smpp: SmppSettings,
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub messages: MessageSettings,
    pub log: LogSettings,
    pub accounts: Vec<AccountSettings>,
    pub upstreams: Vec<UpstreamSettings>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

/// How accepted messages are kept.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub system_id: String,
    /// Plain password, for development.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Argon2 PHC string, as printed by `smpp-broker hash-password`.
    #[serde(default)]
    pub password_hash: Option<Secret>,
    /// Name of an `[[upstreams]]` entry.
    pub upstream: String,
    #[serde(default = "default_bind_types")]
    pub bind_types: Vec<BindKind>,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Submits per second (token bucket rate).
    #[serde(default = "default_throughput")]
    pub throughput: f64,
    /// Messages waiting to be handed upstream; above it, ESME_RMSGQFUL.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Receipts and incoming messages kept for the account's receivers at most;
    /// beyond it the oldest are dropped (logged).
    #[serde(default = "default_max_undelivered")]
    pub max_undelivered: usize,
    /// Incoming messages to these numbers (of the account's upstream) come to
    /// this account. Without a match they go to the first account of the upstream.
    #[serde(default)]
    pub receive_numbers: Vec<String>,
    /// How data_coding 0 is read: "gsm7" (GSM 03.38) or "latin1".
    #[serde(default)]
    pub default_alphabet: crate::text::DefaultAlphabet,
    /// How an incoming message too long for one SMS goes out: "udh" (segments)
    /// or "message_payload" (whole, in the TLV).
    #[serde(default)]
    pub long_incoming: crate::text::LongIncoming,
}

fn default_max_queued() -> usize {
    100_000
}

/// Receipts and incoming messages an account keeps when it names no limit.
pub const DEFAULT_MAX_UNDELIVERED: usize = 25_000;

fn default_max_undelivered() -> usize {
    DEFAULT_MAX_UNDELIVERED
}

fn default_bind_types() -> Vec<BindKind> {
    BindKind::ALL.to_vec()
}

fn default_max_sessions() -> usize {
    4
}

fn default_throughput() -> f64 {
    100.0
}

impl AccountSettings {
    /// Whether this account may bind as `bind`.
    pub fn allows(&self, bind: BindKind) -> bool {
        self.bind_types.contains(&bind)
    }
}

/// An SMS gateway the dispatcher hands messages to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub name: String,
    pub kind: UpstreamKind,
    /// Keep this upstream's messages queued and send none (maintenance).
    #[serde(default)]
    pub hold: bool,

    // Throttling and retries, for every kind. Defaults depend on the kind.
    /// Messages per second at most.
    pub rate: Option<f64>,
    /// Requests waiting for an answer at most.
    pub max_in_flight: Option<usize>,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Waits before the 1st, 2nd, … retry of a failed attempt; the last repeats.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<humantime_serde::Serde<Duration>>,
    /// After a 401/403 the upstream is paused this long, then tried again.
    #[serde(default = "default_pause_cooldown", with = "humantime_serde")]
    pub pause_cooldown: Duration,
    /// A message with no final state this long after the upstream took it is polled.
    #[serde(default = "default_check_after", with = "humantime_serde")]
    pub check_after: Duration,
    /// Then polled again at this interval until final.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,

    // kind = "smsgate"
    pub mode: Option<SmsGateMode>,
    pub base_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub device_id: Option<String>,
    pub sim_number: Option<u8>,
    pub signing_key: Option<Secret>,
    pub skip_phone_validation: Option<bool>,
    /// Port of binary (data_coding 2/4) messages.
    pub data_port: Option<u16>,
    /// How often the inbox is read for incoming messages when http.public_url
    /// is not set (no webhooks).
    #[serde(default, with = "humantime_serde")]
    pub inbox_interval: Option<Duration>,

    // kind = "sandbox"
    #[serde(default, with = "humantime_serde")]
    pub sent_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub delivered_after: Option<Duration>,
    /// Share of messages the simulated network fails instead of delivering.
    pub failure_ratio: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// Simulated network: nothing is really sent.
    Sandbox,
    /// SMSGate (android-sms-gateway): cloud, private server or the phone itself.
    Smsgate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsGateMode {
    /// api.sms-gate.app.
    Cloud,
    /// A private SMSGate server.
    Private,
    /// The app's own server on the phone.
    Local,
}

/// SMSGate's public cloud API.
pub const SMSGATE_CLOUD_URL: &str = "https://api.sms-gate.app/3rdparty/v1";

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retry_schedule() -> Vec<humantime_serde::Serde<Duration>> {
    [5, 30, 120, 600, 1800]
        .into_iter()
        .map(|s| Duration::from_secs(s).into())
        .collect()
}

fn default_pause_cooldown() -> Duration {
    Duration::from_secs(60)
}

fn default_check_after() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_check_interval() -> Duration {
    Duration::from_secs(30 * 60)
}

impl UpstreamSettings {
    pub fn rate(&self) -> f64 {
        self.rate.unwrap_or(match self.kind {
            // One phone sends a few SMS a second at most.
            UpstreamKind::Smsgate => 1.0,
            UpstreamKind::Sandbox => 100.0,
        })
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.unwrap_or(match self.kind {
            UpstreamKind::Smsgate => 4,
            UpstreamKind::Sandbox => 64,
        })
    }

    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.retry_schedule.iter().map(|d| **d).collect()
    }

    pub fn mode(&self) -> SmsGateMode {
        self.mode.unwrap_or(SmsGateMode::Cloud)
    }

    /// The API's base URL without a trailing slash.
    pub fn base_url(&self) -> String {
        let url = self.base_url.as_deref().unwrap_or(SMSGATE_CLOUD_URL);
        url.trim_end_matches('/').to_owned()
    }

    pub fn skip_phone_validation(&self) -> bool {
        self.skip_phone_validation.unwrap_or(false)
    }

    pub fn data_port(&self) -> u16 {
        self.data_port.unwrap_or(53739)
    }

    pub fn sent_after(&self) -> Duration {
        self.sent_after.unwrap_or(Duration::from_secs(1))
    }

    pub fn delivered_after(&self) -> Duration {
        self.delivered_after.unwrap_or(Duration::from_secs(3))
    }

    pub fn inbox_interval(&self) -> Duration {
        self.inbox_interval.unwrap_or(Duration::from_secs(15))
    }

    pub fn failure_ratio(&self) -> f64 {
        self.failure_ratio.unwrap_or(0.0)
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let key = |field: &str| format!("upstreams[{i}].{field}");
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(key("rate"), "must be a number above 0"));
            }
        }
        if self.max_in_flight == Some(0) {
            return Err(invalid(key("max_in_flight"), "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid(key("request_timeout"), "must be above 0"));
        }
        if self.retry_schedule.is_empty() {
            return Err(invalid(
                key("retry_schedule"),
                "must list at least one wait",
            ));
        }
        if self.check_interval.is_zero() {
            return Err(invalid(key("check_interval"), "must be above 0"));
        }
        if self.inbox_interval.is_some_and(|i| i.is_zero()) {
            return Err(invalid(key("inbox_interval"), "must be above 0"));
        }
        let smsgate_keys = [
            ("mode", self.mode.is_some()),
            ("base_url", self.base_url.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("device_id", self.device_id.is_some()),
            ("sim_number", self.sim_number.is_some()),
            ("signing_key", self.signing_key.is_some()),
            (
                "skip_phone_validation",
                self.skip_phone_validation.is_some(),
            ),
            ("data_port", self.data_port.is_some()),
            ("inbox_interval", self.inbox_interval.is_some()),
        ];
        let sandbox_keys = [
            ("sent_after", self.sent_after.is_some()),
            ("delivered_after", self.delivered_after.is_some()),
            ("failure_ratio", self.failure_ratio.is_some()),
        ];
        let (foreign, own_kind) = match self.kind {
            UpstreamKind::Sandbox => (&smsgate_keys[..], "smsgate"),
            UpstreamKind::Smsgate => (&sandbox_keys[..], "sandbox"),
        };
        if let Some((field, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key(field),
                format!("applies only to kind = \"{own_kind}\""),
            ));
        }
        match self.kind {
            UpstreamKind::Sandbox => {
                if let Some(ratio) = self.failure_ratio {
                    if !(0.0..=1.0).contains(&ratio) {
                        return Err(invalid(key("failure_ratio"), "must be between 0 and 1"));
                    }
                }
            }
            UpstreamKind::Smsgate => {
                if self.mode() != SmsGateMode::Cloud && self.base_url.is_none() {
                    return Err(invalid(
                        key("base_url"),
                        "is required for mode \"private\" (https://HOST/api/3rdparty/v1) \
                         and \"local\" (http://PHONE:8080)",
                    ));
                }
                let url = self.base_url();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        key("base_url"),
                        "must be an http:// or https:// URL",
                    ));
                }
                if self.username.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        key("username"),
                        "is required for kind = \"smsgate\"",
                    ));
                }
                if self.password.as_ref().is_none_or(|p| p.expose().is_empty()) {
                    return Err(invalid(
                        key("password"),
                        "is required for kind = \"smsgate\"",
                    ));
                }
                if let Some(sim) = self.sim_number {
                    if !(1..=3).contains(&sim) {
                        return Err(invalid(key("sim_number"), "must be 1, 2 or 3"));
                    }
                }
                if let Some(device) = &self.device_id {
                    if device.is_empty() || device.len() > 21 {
                        return Err(invalid(key("device_id"), "must be 1 to 21 characters"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A secret string. `Debug` and `Display` print `***`; use [`Secret::expose`]
/// where the value is really needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written so a mistyped secret (`password = 12345678`) is
        // rejected without serde's default message quoting the value.
        struct SecretVisitor;

        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }

        const NOT_A_STRING: &str = "expected a string (put the value in quotes)";
        deserializer.deserialize_string(SecretVisitor)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// An `SMPP_BROKER__...` variable could not be applied.
    #[error("env {var}: {message}")]
    Env { var: String, message: String },
    /// A value has the wrong type or form, or a key is unknown.
    #[error("{origin}: {key}: {message}")]
    Deserialize {
        origin: String,
        key: String,
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{}{key}: {message}", .origin.as_deref().map(|o| format!("{o}: ")).unwrap_or_default())]
    Invalid {
        /// The file the settings came from, when known.
        origin: Option<String>,
        key: String,
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: None,
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    /// The embedded default configuration text.
    pub const DEFAULT_TOML: &'static str = include_str!("../config/default.toml");

    /// Load from the file at `path` (or the embedded default when `None`),
    /// then apply overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env = process_env()?;
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Settings::from_toml(&text, &path.display().to_string(), env)
            }
            None => Settings::from_toml(Self::DEFAULT_TOML, DEFAULT_ORIGIN, env),
        }
    }

    /// Parse `toml_text`, apply overrides from `env` (name, value pairs;
    /// names without the `SMPP_BROKER__` prefix are ignored), deserialize and
    /// validate. `origin` names the source in error messages.
    pub fn from_toml(
        toml_text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut tree = toml::Value::Table(
            toml::from_str(toml_text).map_err(|err| syntax_error(origin, toml_text, &err))?,
        );

        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        // Sorted so that `..__TLS` is applied before `..__TLS__CERT`,
        // whatever order the environment lists them in.
        overrides.sort();
        for (name, value) in &overrides {
            apply_override(&mut tree, name, value)?;
        }

        let settings: Settings =
            serde_path_to_error::deserialize(tree).map_err(|err| ConfigError::Deserialize {
                origin: origin.to_owned(),
                key: err.path().to_string(),
                message: err.inner().message().to_owned(),
            })?;

        settings.validate().map_err(|err| match err {
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                origin: Some(origin.to_owned()),
                key,
                message,
            },
            other => other,
        })?;
        Ok(settings)
    }

    /// Check the values that deserialization alone cannot; the first problem
    /// found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.smpp.validate()?;
        self.http.validate()?;
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        // A waiting receipt reads its message; the message must outlive it.
        if self.messages.final_retention < self.messages.undelivered_retention {
            return Err(invalid(
                "messages.final_retention",
                format!(
                    "must be at least messages.undelivered_retention ({})",
                    humantime_serde::re::humantime::format_duration(
                        self.messages.undelivered_retention
                    )
                ),
            ));
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("{err}: {:?}", self.log.level)));
        }

        let mut upstream_names = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let key = format!("upstreams[{i}].name");
            if upstream.name.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
            if !upstream_names.insert(upstream.name.as_str()) {
                return Err(invalid(
                    key,
                    format!("duplicate upstream name {:?}", upstream.name),
                ));
            }
            upstream.validate(i)?;
        }

        let mut system_ids = HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            account.validate(i, &upstream_names)?;
            if !system_ids.insert(account.system_id.as_str()) {
                return Err(invalid(
                    format!("accounts[{i}].system_id"),
                    format!("duplicate system_id {:?}", account.system_id),
                ));
            }
        }
        Ok(())
    }

    /// The account that binds with `system_id` (compared exactly).
    pub fn account(&self, system_id: &str) -> Option<&AccountSettings> {
        self.accounts.iter().find(|a| a.system_id == system_id)
    }
}

impl SmppSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl HttpSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl AccountSettings {
    fn validate(&self, index: usize, upstreams: &HashSet<&str>) -> Result<(), ConfigError> {
        let key = |field: &str| format!("accounts[{index}].{field}");
        if let Some(message) = system_id_problem(&self.system_id) {
            return Err(invalid(key("system_id"), message));
        }
        match (&self.password, &self.password_hash) {
            (Some(password), None) => {
                let password = password.expose();
                if password.is_empty() {
                    return Err(invalid(key("password"), "must not be empty"));
                }
                // Counted in bytes: that is what the PDU field limits.
                if password.len() > MAX_PASSWORD_LEN {
                    return Err(invalid(
                        key("password"),
                        "longer than 8 characters (SMPP passwords are at most 8)",
                    ));
                }
                if password.contains('\0') {
                    return Err(invalid(key("password"), "must not contain NUL"));
                }
            }
            (None, Some(hash)) => {
                // The message never includes the hash itself.
                let parsed = argon2::PasswordHash::new(hash.expose()).map_err(|err| {
                    invalid(
                        key("password_hash"),
                        format!("not a valid PHC hash string ({err}); make one with `smpp-broker hash-password`"),
                    )
                })?;
                if argon2::Algorithm::try_from(parsed.algorithm).is_err() {
                    return Err(invalid(
                        key("password_hash"),
                        format!(
                            "algorithm {} is not argon2 (argon2id, argon2i or argon2d)",
                            parsed.algorithm
                        ),
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    format!("accounts[{index}]"),
                    "set exactly one of password or password_hash",
                ))
            }
        }
        if !upstreams.contains(self.upstream.as_str()) {
            return Err(invalid(
                key("upstream"),
                format!("no upstream named {:?}", self.upstream),
            ));
        }
        if self.bind_types.is_empty() {
            return Err(invalid(
                key("bind_types"),
                "must list at least one of transmitter, receiver, transceiver",
            ));
        }
        if self.max_sessions == 0 {
            return Err(invalid(key("max_sessions"), "must be at least 1"));
        }
        if !(self.throughput.is_finite() && self.throughput > 0.0) {
            return Err(invalid(
                key("throughput"),
                format!("must be a finite number above 0, got {}", self.throughput),
            ));
        }
        if self.max_queued == 0 {
            return Err(invalid(key("max_queued"), "must be at least 1"));
        }
        Ok(())
    }
}

/// Why `id` is not a usable system_id, if it is not.
fn system_id_problem(id: &str) -> Option<String> {
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

/// `origin: line L, column C: message`. toml's own Display quotes the
/// offending source line, which could hold a secret, so it is not used.
fn syntax_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let location = err
        .span()
        .map(|span| {
            // `get` rather than slicing: a span off a char boundary must not panic.
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    ConfigError::Syntax {
        origin: origin.to_owned(),
        message: format!("{location}{}", err.message().trim_end()),
    }
}

/// The process environment, keeping only our variables' values as UTF-8.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        // Other programs' variables may be anything; only ours must be UTF-8.
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "value is not valid UTF-8".to_owned(),
        })?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// Apply one `SMPP_BROKER__A__B__C=value` override to the parsed tree,
/// creating missing tables; array elements must already exist.
/// Values are never included in error messages: they may be secrets.
fn apply_override(tree: &mut toml::Value, var: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let segments: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_lowercase)
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err(env_err(
            "empty key segment (segments are separated by exactly two underscores)".to_owned(),
        ));
    }
    let Some((last, parents)) = segments.split_last() else {
        return Err(env_err("no key after the prefix".to_owned()));
    };

    // The key path walked so far, spelled as in other error messages.
    let mut path = String::new();
    let mut node = tree;
    for (depth, segment) in parents.iter().enumerate() {
        node = match node {
            toml::Value::Table(table) => {
                if !table.contains_key(segment) {
                    // `ACCOUNTS__0__...` with no `accounts`: an array cannot
                    // be conjured from nothing, and a table would be wrong.
                    if let Ok(index) = segments[depth + 1].parse::<usize>() {
                        return Err(env_err(format!(
                            "{} has no element {index}",
                            child_path(&path, segment)
                        )));
                    }
                }
                table
                    .entry(segment.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(array) => element(array, segment, &path).map_err(env_err)?,
            _ => return Err(env_err(format!("{path} is not a table"))),
        };
        path = child_path(&path, segment);
    }

    let value = parse_override_value(last, raw);
    match node {
        toml::Value::Table(table) => {
            table.insert(last.clone(), value);
        }
        toml::Value::Array(array) => {
            *element(array, last, &path).map_err(env_err)? = value;
        }
        _ => return Err(env_err(format!("{path} is not a table"))),
    }
    Ok(())
}

/// `accounts` + `0` -> `accounts[0]`; `smpp` + `tls` -> `smpp.tls`.
fn child_path(path: &str, segment: &str) -> String {
    if segment.parse::<usize>().is_ok() {
        format!("{path}[{segment}]")
    } else if path.is_empty() {
        segment.to_owned()
    } else {
        format!("{path}.{segment}")
    }
}

fn element<'a>(
    array: &'a mut [toml::Value],
    segment: &str,
    path: &str,
) -> Result<&'a mut toml::Value, String> {
    let index: usize = segment
        .parse()
        .map_err(|_| format!("{path} is an array: expected an index, got {segment:?}"))?;
    array
        .get_mut(index)
        .ok_or_else(|| format!("{path} has no element {index}"))
}

/// A TOML value (`42`, `true`, `["receiver"]`) when `raw` parses as one,
/// else the raw string; string-typed keys always keep the raw string.
fn parse_override_value(key: &str, raw: &str) -> toml::Value {
    if !STRING_KEYS.contains(&key) {
        if let Ok(value) = toml::Value::deserialize(toml::de::ValueDeserializer::new(raw)) {
            return value;
        }
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal valid configuration: one upstream and one account, last so
    /// that tests can append keys to `accounts[0]`.
    const BASE: &str = r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"

[[accounts]]
system_id = "demo"
password = "demo1234"
upstream = "sandbox"
"#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, "test.toml", no_env())
    }

    fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, "test.toml", env(pairs))
    }

    /// The error message for `text`, which must be rejected.
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(settings) => panic!("accepted: {settings:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn error_env(text: &str, pairs: &[(&str, &str)]) -> String {
        match parse_env(text, pairs) {
            Ok(settings) => panic!("accepted: {settings:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// BASE with `extra` appended to `accounts[0]`.
    fn account_with(extra: &str) -> String {
        format!("{BASE}{extra}\n")
    }

    /// `section` (e.g. "[smpp]\nbind = ...") followed by BASE.
    fn with_section(section: &str) -> String {
        format!("{section}\n{BASE}")
    }

    fn argon2_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        // A fixed salt keeps the test deterministic and needs no RNG feature.
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn embedded_default_parses_and_validates() {
        let settings = Settings::from_toml(Settings::DEFAULT_TOML, DEFAULT_ORIGIN, no_env())
            .expect("default config");
        assert_eq!(settings.upstreams.len(), 1);
        assert_eq!(settings.upstreams[0].name, "sandbox");
        assert_eq!(settings.upstreams[0].kind, UpstreamKind::Sandbox);
        let demo = settings.account("demo").expect("demo account");
        assert_eq!(demo.password.as_ref().map(Secret::expose), Some("demo1234"));
        assert!(demo.password_hash.is_none());
        assert_eq!(demo.upstream, "sandbox");
        assert_eq!(demo.bind_types, BindKind::ALL.to_vec());
        assert_eq!(demo.max_sessions, 4);
        assert_eq!(demo.throughput, 100.0);
        assert!(settings.smpp.tls.is_none());
        assert!(settings.http.public_url.is_none());
    }

    #[test]
    fn embedded_default_matches_built_in_defaults() {
        let file = parse(Settings::DEFAULT_TOML).expect("default config");
        let built_in = Settings::default();
        assert_eq!(format!("{:?}", file.smpp), format!("{:?}", built_in.smpp));
        assert_eq!(format!("{:?}", file.http), format!("{:?}", built_in.http));
        assert_eq!(format!("{:?}", file.store), format!("{:?}", built_in.store));
        assert_eq!(format!("{:?}", file.log), format!("{:?}", built_in.log));
    }

    #[test]
    fn load_without_path_uses_embedded_default() {
        // No test sets SMPP_BROKER__ variables, so this is the plain default.
        let settings = Settings::load(None).expect("load");
        assert!(settings.account("demo").is_some());
    }

    #[test]
    fn load_reads_file_and_names_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, BASE).expect("write");
        let settings = Settings::load(Some(&path)).expect("load");
        assert_eq!(settings.accounts[0].system_id, "demo");

        let missing = dir.path().join("missing.toml");
        let err = Settings::load(Some(&missing)).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn every_default_value() {
        let s = parse("").expect("empty config");
        assert_eq!(s.smpp.bind, "0.0.0.0:2775".parse().expect("addr"));
        assert_eq!(s.smpp.system_id, "smpp-broker");
        assert_eq!(s.smpp.max_pdu_size, 65536);
        assert_eq!(s.smpp.max_connections, 10_000);
        assert_eq!(s.smpp.max_in_flight, 1000);
        assert_eq!(s.smpp.deliver_window, 10);
        assert_eq!(s.smpp.session_init_timeout, Duration::from_secs(30));
        assert_eq!(s.smpp.enquire_link_interval, Duration::from_secs(30));
        assert_eq!(s.smpp.response_timeout, Duration::from_secs(10));
        assert_eq!(s.smpp.inactivity_timeout, Duration::from_secs(300));
        assert_eq!(s.smpp.shutdown_timeout, Duration::from_secs(10));
        assert!(!s.smpp.data_sm_in_rx);
        assert!(s.smpp.tls.is_none());
        assert_eq!(s.http.bind, "0.0.0.0:8080".parse().expect("addr"));
        assert!(s.http.public_url.is_none());
        assert_eq!(s.http.max_connections, 256);
        assert_eq!(s.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.http.body_read_timeout, Duration::from_secs(10));
        assert_eq!(s.http.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http.max_body_size, 65536);
        assert_eq!(s.store.path, PathBuf::from("data/broker.db"));
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.log.level, "info");
        assert!(s.accounts.is_empty());
        assert!(s.upstreams.is_empty());

        let s = parse(BASE).expect("base");
        let account = &s.accounts[0];
        assert_eq!(account.bind_types, BindKind::ALL.to_vec());
        assert_eq!(account.max_sessions, 4);
        assert_eq!(account.throughput, 100.0);
        assert!(account.password_hash.is_none());
    }

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
    fn explicit_values_are_read() {
        let text = with_section(
            r#"[smpp]
bind = "127.0.0.1:9000"
session_init_timeout = "1m 30s"
inactivity_timeout = "2h"
data_sm_in_rx = true
[http]
public_url = "https://sms.example.com"
[log]
format = "json"
level = "warn,smpp_broker=debug""#,
        );
        let s = parse(&text).expect("valid");
        assert_eq!(s.smpp.bind, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(s.smpp.session_init_timeout, Duration::from_secs(90));
        assert_eq!(s.smpp.inactivity_timeout, Duration::from_secs(7200));
        assert!(s.smpp.data_sm_in_rx);
        assert_eq!(
            s.http.public_url.as_deref(),
            Some("https://sms.example.com")
        );
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn env_overrides_nested_keys() {
        let s = parse_env(
            BASE,
            &[
                ("SMPP_BROKER__SMPP__BIND", "127.0.0.1:0"),
                ("SMPP_BROKER__STORE__PATH", "/tmp/x.db"),
                // Key segments are case-insensitive.
                ("SMPP_BROKER__Log__Level", "debug"),
                ("SMPP_BROKER__SMPP__RESPONSE_TIMEOUT", "2s"),
            ],
        )
        .expect("overrides");
        assert_eq!(s.smpp.bind, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(s.store.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(s.log.level, "debug");
        assert_eq!(s.smpp.response_timeout, Duration::from_secs(2));
    }

    #[test]
    fn env_overrides_create_tls_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "cert").expect("write");
        std::fs::write(&key, "key").expect("write");
        let cert_s = cert.display().to_string();
        let key_s = key.display().to_string();
        let s = parse_env(
            BASE,
            &[
                // Listed key first: application order must not depend on it.
                ("SMPP_BROKER__SMPP__TLS__KEY", key_s.as_str()),
                ("SMPP_BROKER__SMPP__TLS__CERT", cert_s.as_str()),
                ("SMPP_BROKER__SMPP__TLS__BIND", "127.0.0.1:3776"),
            ],
        )
        .expect("tls overrides");
        let tls = s.smpp.tls.expect("tls set");
        assert_eq!(tls.cert, cert);
        assert_eq!(tls.key, key);
        assert_eq!(tls.bind, "127.0.0.1:3776".parse().expect("addr"));
    }

    #[test]
    fn env_overrides_array_element() {
        let s =
            parse_env(BASE, &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "secret")]).expect("override");
        let password = s.accounts[0].password.as_ref().expect("password");
        assert_eq!(password.expose(), "secret");

        // A digits-only password is a string key: it must not become an integer.
        let s = parse_env(BASE, &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "12345678")])
            .expect("numeric password");
        let password = s.accounts[0].password.as_ref().expect("password");
        assert_eq!(password.expose(), "12345678");
    }

    #[test]
    fn env_overrides_are_parsed_as_toml_values() {
        let s = parse_env(
            BASE,
            &[
                ("SMPP_BROKER__ACCOUNTS__0__MAX_SESSIONS", "8"),
                ("SMPP_BROKER__ACCOUNTS__0__BIND_TYPES", r#"["receiver"]"#),
                ("SMPP_BROKER__ACCOUNTS__0__THROUGHPUT", "50"),
                ("SMPP_BROKER__SMPP__DATA_SM_IN_RX", "true"),
                ("SMPP_BROKER__SMPP__MAX_PDU_SIZE", "2048"),
            ],
        )
        .expect("typed overrides");
        let account = &s.accounts[0];
        assert_eq!(account.max_sessions, 8);
        assert_eq!(account.bind_types, vec![BindKind::Receiver]);
        assert_eq!(account.throughput, 50.0);
        assert!(s.smpp.data_sm_in_rx);
        assert_eq!(s.smpp.max_pdu_size, 2048);
        assert!(account.allows(BindKind::Receiver));
        assert!(!account.allows(BindKind::Transmitter));
        assert!(!account.allows(BindKind::Transceiver));
    }

    #[test]
    fn env_ignores_other_variables() {
        let s = parse_env(
            BASE,
            &[
                ("PATH", "/usr/bin"),
                ("SMPP_BROKER_CONFIG", "/etc/x.toml"),
                ("smpp_broker__smpp__bind", "nonsense"),
            ],
        )
        .expect("ignored");
        assert_eq!(s.smpp.bind, SmppSettings::default().bind);
    }

    #[test]
    fn env_errors_name_the_variable() {
        assert_eq!(
            error_env(BASE, &[("SMPP_BROKER__ACCOUNTS__5__PASSWORD", "secret")]),
            "env SMPP_BROKER__ACCOUNTS__5__PASSWORD: accounts has no element 5"
        );
        assert_eq!(
            error_env("", &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "secret")]),
            "env SMPP_BROKER__ACCOUNTS__0__PASSWORD: accounts has no element 0"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__ACCOUNTS__X__PASSWORD", "secret")]);
        assert!(
            msg.starts_with("env SMPP_BROKER__ACCOUNTS__X__PASSWORD: accounts is an array"),
            "{msg}"
        );
        let msg = error_env(
            &with_section("[smpp]\nbind = \"0.0.0.0:1\""),
            &[("SMPP_BROKER__SMPP__BIND__PORT", "1")],
        );
        assert_eq!(
            msg,
            "env SMPP_BROKER__SMPP__BIND__PORT: smpp.bind is not a table"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__SMPP____BIND", "1")]);
        assert!(
            msg.starts_with("env SMPP_BROKER__SMPP____BIND: empty key segment"),
            "{msg}"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__", "1")]);
        assert!(msg.starts_with("env SMPP_BROKER__: "), "{msg}");
        // The value itself is never echoed.
        assert!(!msg.contains("secret"));
    }

    #[test]
    fn env_value_errors_name_the_key() {
        assert_eq!(
            error_env(BASE, &[("SMPP_BROKER__SMPP__BIND", "not-an-address")]),
            "test.toml: smpp.bind: invalid socket address syntax"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__SMPP__NOPE", "1")]);
        assert!(
            msg.starts_with("test.toml: smpp.nope: unknown field `nope`"),
            "{msg}"
        );
    }

    #[test]
    fn deserialization_errors_name_the_key() {
        assert_eq!(
            Settings::from_toml("[smpp]\nbind = \"nope\"\n", "config/default.toml", no_env())
                .expect_err("bad bind")
                .to_string(),
            "config/default.toml: smpp.bind: invalid socket address syntax"
        );
        let msg = error(&with_section("[smpp]\nresponse_timeout = \"ten seconds\""));
        assert!(
            msg.starts_with("test.toml: smpp.response_timeout: "),
            "{msg}"
        );
        let msg = error(&with_section("[smpp]\nmax_connections = \"many\""));
        assert!(
            msg.starts_with("test.toml: smpp.max_connections: invalid type"),
            "{msg}"
        );
        let msg = error(&account_with("bind_types = [\"sender\"]"));
        assert!(
            msg.starts_with("test.toml: accounts[0].bind_types[0]: unknown variant `sender`"),
            "{msg}"
        );
        let msg = error(&with_section("[log]\nformat = \"xml\""));
        assert!(
            msg.starts_with("test.toml: log.format: unknown variant `xml`"),
            "{msg}"
        );
        let msg = error("[[upstreams]]\nname = \"x\"\nkind = \"carrier-pigeon\"\n");
        assert!(
            msg.starts_with("test.toml: upstreams[0].kind: unknown variant"),
            "{msg}"
        );
        let msg = error("[[accounts]]\nsystem_id = \"a\"\npassword = \"p\"\n");
        assert!(
            msg.contains("accounts[0]") && msg.contains("missing field `upstream`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let msg = error(&with_section("[smpp]\nbindd = \"0.0.0.0:1\""));
        assert!(
            msg.starts_with("test.toml: smpp.bindd: unknown field `bindd`"),
            "{msg}"
        );
        let msg = error(&account_with("passwd = \"x\""));
        assert!(
            msg.starts_with("test.toml: accounts[0].passwd: unknown field `passwd`"),
            "{msg}"
        );
        let msg = error("[smtp]\nbind = \"0.0.0.0:1\"\n");
        assert!(
            msg.starts_with("test.toml: smtp: unknown field `smtp`"),
            "{msg}"
        );
        let msg = error(&with_section(
            "[smpp.tls]\ncert = \"a\"\nkey = \"b\"\nca = \"c\"",
        ));
        assert!(
            msg.starts_with("test.toml: smpp.tls.ca: unknown field `ca`"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file_without_quoting_it() {
        let msg = error("[[accounts]]\npassword = \"hunter2\" junk\n");
        assert!(msg.starts_with("test.toml: line 2, column "), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn password_errors() {
        assert_eq!(
            error(&BASE.replace("demo1234", "demo12345")),
            "test.toml: accounts[0].password: longer than 8 characters (SMPP passwords are at most 8)"
        );
        assert_eq!(
            error(&BASE.replace("demo1234", "")),
            "test.toml: accounts[0].password: must not be empty"
        );
        assert_eq!(
            error(&account_with(&format!(
                "password_hash = {:?}",
                argon2_hash("x")
            ))),
            "test.toml: accounts[0]: set exactly one of password or password_hash"
        );
        assert_eq!(
            error(&BASE.replace("password = \"demo1234\"", "")),
            "test.toml: accounts[0]: set exactly one of password or password_hash"
        );
    }

    #[test]
    fn valid_argon2_hash_is_accepted() {
        let hash = argon2_hash("s3cret");
        let text = BASE.replace(
            "password = \"demo1234\"",
            &format!("password_hash = {hash:?}"),
        );
        let s = parse(&text).expect("valid hash");
        let account = s.account("demo").expect("account");
        assert!(account.password.is_none());
        assert_eq!(
            account.password_hash.as_ref().map(Secret::expose),
            Some(hash.as_str())
        );
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        for bad in [
            "not-a-hash",
            "$argon2id$v=19$m=19456,t=2,p=1$bad salt$",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ] {
            let text = BASE.replace(
                "password = \"demo1234\"",
                &format!("password_hash = {bad:?}"),
            );
            let msg = error(&text);
            assert!(
                msg.starts_with("test.toml: accounts[0].password_hash: "),
                "{msg}"
            );
            assert!(!msg.contains(bad), "hash echoed: {msg}");
        }
    }

    #[test]
    fn mistyped_secret_is_not_echoed() {
        let msg = error(&BASE.replace("\"demo1234\"", "87654321"));
        assert!(
            msg.starts_with("test.toml: accounts[0].password: expected a string"),
            "{msg}"
        );
        assert!(!msg.contains("87654321"), "{msg}");
    }

    #[test]
    fn account_errors_name_their_key() {
        let two = format!(
            "{BASE}\n[[accounts]]\nsystem_id = \"other\"\npassword = \"pw\"\nupstream = \"x\"\n"
        );
        assert_eq!(
            error(&two),
            "test.toml: accounts[1].upstream: no upstream named \"x\""
        );

        let dup = format!("{BASE}\n[[accounts]]\nsystem_id = \"demo\"\npassword = \"pw\"\nupstream = \"sandbox\"\n");
        assert_eq!(
            error(&dup),
            "test.toml: accounts[1].system_id: duplicate system_id \"demo\""
        );

        let msg = error(&BASE.replace("\"demo\"", "\"a-very-long-system-id\""));
        assert!(
            msg.starts_with("test.toml: accounts[0].system_id: ") && msg.contains("longer than 15"),
            "{msg}"
        );
        let msg = error(&BASE.replace("\"demo\"", "\"\""));
        assert_eq!(msg, "test.toml: accounts[0].system_id: must not be empty");
        let msg = error(&BASE.replace("\"demo\"", "\"d\u{e9}mo\""));
        assert!(
            msg.starts_with("test.toml: accounts[0].system_id: ")
                && msg.contains("printable ASCII"),
            "{msg}"
        );

        assert_eq!(
            error(&account_with("bind_types = []")),
            "test.toml: accounts[0].bind_types: must list at least one of transmitter, receiver, transceiver"
        );
        assert_eq!(
            error(&account_with("max_sessions = 0")),
            "test.toml: accounts[0].max_sessions: must be at least 1"
        );
        for bad in ["0.0", "-1.0", "nan", "inf"] {
            let msg = error(&account_with(&format!("throughput = {bad}")));
            assert!(
                msg.starts_with(
                    "test.toml: accounts[0].throughput: must be a finite number above 0"
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn upstream_errors_name_their_key() {
        let dup = format!("{BASE}\n[[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n");
        assert_eq!(
            error(&dup),
            "test.toml: upstreams[1].name: duplicate upstream name \"sandbox\""
        );
        let empty = "[[upstreams]]\nname = \"\"\nkind = \"sandbox\"\n";
        assert_eq!(
            error(empty),
            "test.toml: upstreams[0].name: must not be empty"
        );
    }

    /// BASE with an smsgate upstream "phone" whose extra lines are `keys`.
    fn smsgate(keys: &str) -> String {
        format!("[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\n{keys}\n{BASE}")
    }

    #[test]
    fn smsgate_upstreams_are_read_with_their_defaults() {
        let settings = parse(&smsgate(
            "username = \"ABCDEF\"\npassword = \"pw-of-14-chars\"\n\
             retry_schedule = [\"1s\", \"1m\"]\ndevice_id = \"dev1\"\nsim_number = 2",
        ))
        .unwrap();
        let phone = &settings.upstreams[0];
        assert_eq!(phone.kind, UpstreamKind::Smsgate);
        assert_eq!(phone.mode(), SmsGateMode::Cloud);
        assert_eq!(phone.base_url(), SMSGATE_CLOUD_URL);
        assert_eq!(phone.rate(), 1.0);
        assert_eq!(phone.max_in_flight(), 4);
        assert_eq!(
            phone.retry_schedule(),
            [Duration::from_secs(1), Duration::from_secs(60)]
        );
        assert_eq!(phone.sim_number, Some(2));
        assert!(!format!("{phone:?}").contains("pw-of-14-chars"));
        let sandbox = &settings.upstreams[1];
        assert_eq!(sandbox.retry_schedule().len(), 5);
        assert_eq!(sandbox.delivered_after(), Duration::from_secs(3));

        let local = parse(&smsgate(
            "mode = \"local\"\nbase_url = \"http://192.168.1.20:8080/\"\n\
             username = \"sms\"\npassword = \"x\"",
        ))
        .unwrap();
        assert_eq!(local.upstreams[0].base_url(), "http://192.168.1.20:8080");
    }

    #[test]
    fn smsgate_errors_name_their_key() {
        let creds = "username = \"u\"\npassword = \"p\"";
        for (keys, expected) in [
            ("password = \"p\"", "upstreams[0].username: is required"),
            ("username = \"u\"", "upstreams[0].password: is required"),
            (
                &format!("{creds}\nmode = \"private\""),
                "upstreams[0].base_url: is required for mode",
            ),
            (
                &format!("{creds}\nbase_url = \"ftp://x\""),
                "upstreams[0].base_url: must be an http",
            ),
            (&format!("{creds}\nrate = 0"), "upstreams[0].rate: must be"),
            (
                &format!("{creds}\nmax_in_flight = 0"),
                "upstreams[0].max_in_flight",
            ),
            (
                &format!("{creds}\nretry_schedule = []"),
                "upstreams[0].retry_schedule",
            ),
            (
                &format!("{creds}\nsim_number = 4"),
                "upstreams[0].sim_number",
            ),
            (
                &format!("{creds}\nfailure_ratio = 0.5"),
                "upstreams[0].failure_ratio: applies only to kind = \"sandbox\"",
            ),
            (
                &format!("{creds}\nmode = \"satellite\""),
                "upstreams[0].mode",
            ),
        ] {
            let message = error(&smsgate(keys));
            assert!(message.contains(expected), "{keys:?}: {message}");
        }
        let sandbox_with_url = format!(
            "[[upstreams]]\nname = \"s2\"\nkind = \"sandbox\"\nbase_url = \"https://x\"\n{BASE}"
        );
        assert!(error(&sandbox_with_url)
            .contains("upstreams[0].base_url: applies only to kind = \"smsgate\""));
    }

    #[test]
    fn smsgate_secrets_can_come_from_the_environment() {
        let settings = parse_env(
            &smsgate("username = \"u\""),
            &[("SMPP_BROKER__UPSTREAMS__0__PASSWORD", "12345678")],
        )
        .unwrap();
        assert_eq!(
            settings.upstreams[0].password.as_ref().unwrap().expose(),
            "12345678"
        );
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

    #[test]
    fn other_section_errors_name_their_key() {
        let msg = error(&with_section("[log]\nlevel = \"info,[[[\""));
        assert!(
            msg.starts_with("test.toml: log.level: invalid filter directive"),
            "{msg}"
        );
        let msg = error(&with_section("[http]\npublic_url = \"sms.example.com\""));
        assert!(
            msg.starts_with("test.toml: http.public_url: must start with http://"),
            "{msg}"
        );
        assert_eq!(
            error(&with_section("[store]\npath = \"\"")),
            "test.toml: store.path: must not be empty"
        );
    }

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
    fn validate_alone_has_no_origin() {
        let mut settings = parse(BASE).expect("base");
        settings.accounts[0].upstream = "gone".to_owned();
        assert_eq!(
            settings.validate().expect_err("invalid").to_string(),
            "accounts[0].upstream: no upstream named \"gone\""
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let hash = argon2_hash("s3cret");
        let text = format!(
            "{BASE}\n[[accounts]]\nsystem_id = \"hashed\"\npassword_hash = {hash:?}\nupstream = \"sandbox\"\n"
        );
        let settings = parse(&text).expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("demo1234"), "{debug}");
        assert!(!debug.contains(&hash), "{debug}");
        assert!(debug.contains("***"));
        let pretty = format!("{:#?}", settings.accounts[0]);
        assert!(!pretty.contains("demo1234"), "{pretty}");
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn account_lookup_is_exact() {
        let settings = parse(BASE).expect("base");
        assert!(settings.account("demo").is_some());
        assert!(settings.account("DEMO").is_none());
        assert!(settings.account("nobody").is_none());
        assert_eq!(BindKind::Transceiver.name(), "transceiver");
    }

    #[test]
    fn bind_types_are_spelled_as_the_bind_kind_names() {
        for kind in BindKind::ALL {
            let text = account_with(&format!("bind_types = [{:?}]", kind.name()));
            let settings = parse(&text).expect("valid");
            assert_eq!(settings.accounts[0].bind_types, [kind]);
        }
    }
}
