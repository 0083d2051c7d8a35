//! A test broker whose account `acme` (password `acme1234`) sends through a fake
//! SMSGate upstream named `phone`.

use smpp_broker::{Broker, Settings};

use super::fake_smsgate::FakeSmsGate;
use super::TestBroker;

/// A broker whose account `acme` sends through the fake, with quick retries.
/// A key in `upstream_extra` replaces the default of the same name.
pub fn settings(dir: &std::path::Path, fake: &FakeSmsGate, upstream_extra: &str) -> Settings {
    settings_with_http(dir, fake, upstream_extra, "")
}

/// As `settings`, with `http_extra` lines in `[http]`.
pub fn settings_with_http(
    dir: &std::path::Path,
    fake: &FakeSmsGate,
    upstream_extra: &str,
    http_extra: &str,
) -> Settings {
    let defaults = [
        ("rate", "1000".to_owned()),
        ("retry_schedule", "[\"50ms\"]".to_owned()),
        ("pause_cooldown", "\"300ms\"".to_owned()),
    ];
    let overridden: Vec<&str> = upstream_extra
        .lines()
        .filter_map(|line| line.split('=').next())
        .map(str::trim)
        .collect();
    let upstream_keys: String = defaults
        .iter()
        .filter(|(key, _)| !overridden.contains(key))
        .map(|(key, value)| format!("{key} = {value}\n"))
        .chain(std::iter::once(upstream_extra.to_owned()))
        .collect();
    let text = format!(
        r#"
[smpp]
bind = "127.0.0.1:0"
[http]
bind = "127.0.0.1:0"
{http_extra}
[store]
path = "{db}"

[[upstreams]]
name = "phone"
kind = "smsgate"
mode = "cloud"
base_url = "{base}"
username = "{user}"
password = "{password}"
device_id = "{device}"
{upstream_keys}

[[accounts]]
system_id = "acme"
password = "acme1234"
upstream = "phone"
"#,
        db = dir.join("broker.db").display(),
        base = fake.base_url(),
        user = fake.username(),
        password = fake.password(),
        device = fake.device_id(),
    );
    Settings::from_toml(&text, "dispatch test", std::iter::empty()).expect("valid config")
}

/// A broker as `settings(…, "")` makes it, after `edit` changed the settings.
#[allow(dead_code)]
pub async fn start_with(fake: &FakeSmsGate, edit: impl FnOnce(&mut Settings)) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), fake, "");
    edit(&mut settings);
    let broker = Broker::start(settings).await.expect("broker starts");
    TestBroker { broker, dir }
}

pub async fn start(fake: &FakeSmsGate, upstream_extra: &str) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(settings(dir.path(), fake, upstream_extra))
        .await
        .expect("broker starts");
    TestBroker { broker, dir }
}
