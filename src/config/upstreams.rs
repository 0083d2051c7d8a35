//! `[[upstreams]]`: the SMS gateways messages are handed to, one kind each
//! (the sandbox or SMSGate), with their throttling and retries.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError, Secret};

/// An SMS gateway the dispatcher hands messages to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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

    // Carrier limits, counted in SMS parts; the upstream is skipped once reached.
    pub daily_limit: Option<u32>,
    pub monthly_limit: Option<u32>,
    /// Where the day and the month turn (an IANA name); UTC when absent.
    pub limits_timezone: Option<String>,

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
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// Simulated network: nothing is really sent.
    Sandbox,
    /// SMSGate (android-sms-gateway): cloud, private server or the phone itself.
    Smsgate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
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

    /// The time zone of the limits' days and months (validated at load).
    pub fn limits_timezone(&self) -> jiff::tz::TimeZone {
        self.limits_timezone
            .as_deref()
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }

    pub fn failure_ratio(&self) -> f64 {
        self.failure_ratio.unwrap_or(0.0)
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let key = |field: &str| format!("upstreams[{i}].{field}");
        self.validate_common(&key)?;
        self.reject_other_kinds_keys(&key)?;
        match self.kind {
            UpstreamKind::Sandbox => self.validate_sandbox(&key),
            UpstreamKind::Smsgate => self.validate_smsgate(&key),
        }
    }

    /// The keys every kind has.
    fn validate_common(&self, key: &impl Fn(&str) -> String) -> Result<(), ConfigError> {
        if let Some(rate) = self.rate {
            // Below one message in 1,000 s the pacing and lease arithmetic
            // would leave every range a clock can hold.
            if !(0.001..=1_000_000.0).contains(&rate) {
                return Err(invalid(
                    key("rate"),
                    "must be a number from 0.001 to 1000000 (messages a second)",
                ));
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
        for (field, limit) in [
            ("daily_limit", self.daily_limit),
            ("monthly_limit", self.monthly_limit),
        ] {
            if limit == Some(0) {
                return Err(invalid(
                    key(field),
                    "must be at least 1 (use hold = true to send nothing)",
                ));
            }
        }
        if let Some(zone) = &self.limits_timezone {
            if jiff::tz::TimeZone::get(zone).is_err() {
                return Err(invalid(
                    key("limits_timezone"),
                    format!("{zone:?} is not a known time zone (an IANA name such as \"Europe/Berlin\")"),
                ));
            }
        }
        Ok(())
    }

    /// The keys only kind = "smsgate" has, and whether each is set.
    fn smsgate_keys(&self) -> [(&'static str, bool); 10] {
        [
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
        ]
    }

    /// The keys only kind = "sandbox" has, and whether each is set.
    fn sandbox_keys(&self) -> [(&'static str, bool); 3] {
        [
            ("sent_after", self.sent_after.is_some()),
            ("delivered_after", self.delivered_after.is_some()),
            ("failure_ratio", self.failure_ratio.is_some()),
        ]
    }

    /// A key of the other kind is refused by name rather than ignored.
    fn reject_other_kinds_keys(&self, key: &impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let (smsgate_keys, sandbox_keys) = (self.smsgate_keys(), self.sandbox_keys());
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
        Ok(())
    }

    fn validate_sandbox(&self, key: &impl Fn(&str) -> String) -> Result<(), ConfigError> {
        if let Some(ratio) = self.failure_ratio {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(invalid(key("failure_ratio"), "must be between 0 and 1"));
            }
        }
        Ok(())
    }

    fn validate_smsgate(&self, key: &impl Fn(&str) -> String) -> Result<(), ConfigError> {
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
        Ok(())
    }
}

/// Checks every upstream, in order, and returns their names (unique, none
/// empty) for the accounts to refer to.
pub(super) fn validate_all(upstreams: &[UpstreamSettings]) -> Result<HashSet<&str>, ConfigError> {
    let mut names = HashSet::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        let key = format!("upstreams[{i}].name");
        if upstream.name.is_empty() {
            return Err(invalid(key, "must not be empty"));
        }
        if !names.insert(upstream.name.as_str()) {
            return Err(invalid(
                key,
                format!("duplicate upstream name {:?}", upstream.name),
            ));
        }
        upstream.validate(i)?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::{SmsGateMode, UpstreamKind, UpstreamSettings, SMSGATE_CLOUD_URL};
    use crate::config::test_support::{error, every_key_set, parse, smsgate, BASE};

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
                &format!("{creds}\nrate = 0.0000001"),
                "upstreams[0].rate: must be a number from 0.001 to 1000000",
            ),
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

    /// The wrong-kind scan lists the kind-specific keys by hand: every
    /// optional key must be in one of its lists, or common to both kinds.
    #[test]
    fn every_kind_specific_key_is_scanned() {
        // Optional for both kinds: the throttle's defaults depend on the kind.
        const COMMON_OPTIONAL: [&str; 5] = [
            "rate",
            "max_in_flight",
            "daily_limit",
            "monthly_limit",
            "limits_timezone",
        ];
        let keys = |upstream: &UpstreamSettings| -> BTreeSet<String> {
            let table = toml::Table::try_from(upstream).expect("serializes");
            table.keys().cloned().collect()
        };
        let full = every_key_set().upstreams.remove(0);
        let minimal = parse("[[upstreams]]\nname = \"x\"\nkind = \"sandbox\"\n")
            .expect("minimal upstream")
            .upstreams
            .remove(0);
        let optional: BTreeSet<String> = keys(&full)
            .difference(&keys(&minimal))
            .filter(|key| !COMMON_OPTIONAL.contains(&key.as_str()))
            .cloned()
            .collect();
        let mut scanned = BTreeSet::new();
        for (key, set) in full.smsgate_keys().into_iter().chain(full.sandbox_keys()) {
            assert!(set, "{key} is not set in every_key_set");
            assert!(scanned.insert(key.to_owned()), "{key} is listed twice");
        }
        assert_eq!(optional, scanned);
    }
}
