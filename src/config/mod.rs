//! Typed configuration: TOML file (or the embedded default), overridden by
//! `SMPP_BROKER__SECTION__KEY` environment variables, validated at startup.
//!
//! Every error names the offending key, and secrets never reach `Debug`,
//! `Display` or error messages.
//!
//! One file per section of the file, each with its structs, defaults,
//! validation and tests: `smpp` (with `[smpp.tls]`), `http`, `store`,
//! `messages`, `log`, `accounts`, `upstreams`, `routes`. `env` applies the environment
//! overrides, `secrets` holds [`Secret`]. This module loads, deserializes and
//! validates in that order.
//!
//! The configuration sits below the parts of the broker it configures: it
//! imports only value types from leaf modules (`smpp::pdu::BindKind`,
//! `text::{DefaultAlphabet, LongIncoming}`), and `smpp` and `store` read it,
//! never the other way round.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod accounts;
mod admin;
mod env;
mod http;
mod log;
mod messages;
mod routes;
mod secrets;
mod smpp;
mod store;
#[cfg(test)]
mod test_support;
mod upstreams;

pub use accounts::{AccountSettings, DEFAULT_MAX_UNDELIVERED};
pub use admin::AdminSettings;
pub use env::ENV_PREFIX;
pub use http::HttpSettings;
pub use log::{LogFormat, LogSettings};
pub use messages::MessageSettings;
pub use routes::RouteSettings;
pub use secrets::Secret;
pub use smpp::{SmppSettings, TlsSettings};
pub use store::StoreSettings;
pub use upstreams::{SmsGateMode, UpstreamKind, UpstreamSettings, SMSGATE_CLOUD_URL};

/// Name used in error messages for the embedded default configuration.
const DEFAULT_ORIGIN: &str = "config/default.toml (built-in)";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub smpp: SmppSettings,
    pub http: HttpSettings,
    pub admin: AdminSettings,
    pub store: StoreSettings,
    pub messages: MessageSettings,
    pub log: LogSettings,
    pub accounts: Vec<AccountSettings>,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
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
    pub const DEFAULT_TOML: &'static str = include_str!("../../config/default.toml");

    /// Load from the file at `path` (or the embedded default when `None`),
    /// then apply overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let env = env::process_env()?;
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

        env::apply_overrides(&mut tree, env)?;

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
        self.admin.validate(self.http.bind)?;
        self.store.validate()?;
        self.messages.validate()?;
        self.log.validate()?;
        let upstream_names = upstreams::validate_all(&self.upstreams)?;
        accounts::validate_all(&self.accounts, &upstream_names)?;
        routes::validate_all(&self.routes, &upstream_names, &self.accounts)
    }

    /// The account that binds with `system_id` (compared exactly).
    pub fn account(&self, system_id: &str) -> Option<&AccountSettings> {
        self.accounts.iter().find(|a| a.system_id == system_id)
    }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::test_support::*;
    use crate::smpp::pdu::BindKind;

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
        assert_eq!(demo.upstream.as_deref(), Some("sandbox"));
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
        assert_eq!(s.store.sqlite_path(), PathBuf::from("data/broker.db"));
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
        let msg = error("[[accounts]]\nsystem_id = \"a\"\n");
        assert!(
            msg.contains("accounts[0]") && msg.contains("set exactly one of password"),
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
    fn validate_alone_has_no_origin() {
        let mut settings = parse(BASE).expect("base");
        settings.accounts[0].upstream = Some("gone".to_owned());
        assert_eq!(
            settings.validate().expect_err("invalid").to_string(),
            "accounts[0].upstream: no upstream named \"gone\""
        );
    }
}
