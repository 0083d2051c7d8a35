//! A broker in the test's own process, on 127.0.0.1 port 0 with a temporary
//! database: the one way tests start one.
//!
//! ```ignore
//! let broker = TestBroker::builder().smpp("max_pdu_size = 4096").start().await;
//! let broker = TestBroker::builder().upstream(&fake).upstream_keys("max_in_flight = 1").start().await;
//! let broker = TestBroker::builder().clock(clock.clone()).tls().start().await;
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smpp_broker::clock::{Clock, SystemClock};
use smpp_broker::reload::ConfigSource;
use smpp_broker::{Broker, Settings};
use tempfile::TempDir;

use crate::db::Db;
use crate::eventually::{eventually, PATIENCE};
use crate::fake_smsgate::FakeSmsGate;

/// The accounts of a test broker unless the builder says otherwise. `demo`
/// allows every bind type; `rxonly` only receivers; `single` one session at a
/// time; `tiny` 3 queued messages; `slow` 5 submits per second.
const DEMO_ACCOUNTS: &str = r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
# These tests look at messages waiting in the outbox; the dispatcher tests
# configure their own upstreams.
hold = true

[[accounts]]
system_id = "demo"
password = "demo1234"
upstream = "sandbox"
max_sessions = 2000

[[accounts]]
system_id = "rxonly"
password = "rx"
upstream = "sandbox"
bind_types = ["receiver"]

[[accounts]]
system_id = "single"
password = "single"
upstream = "sandbox"
max_sessions = 1

[[accounts]]
system_id = "tiny"
password = "tiny"
upstream = "sandbox"
max_queued = 3

[[accounts]]
system_id = "slow"
password = "slow"
upstream = "sandbox"
throughput = 5
"#;

/// Keys of the fake SMSGate upstream that `upstream_keys` may replace: quick
/// retries and a short pause, so that faults cost the tests little time.
const UPSTREAM_DEFAULTS: [(&str, &str); 3] = [
    ("rate", "1000"),
    ("retry_schedule", "[\"50ms\"]"),
    ("pause_cooldown", "\"300ms\""),
];

/// The configuration file of a broker built with `config_file()`.
const CONFIG_FILE: &str = "broker.toml";

type Edit = Arc<dyn Fn(&mut Settings) + Send + Sync>;
type MakeSettings = Arc<dyn Fn(&Path) -> Settings + Send + Sync>;

/// Which upstreams and accounts the broker has.
#[derive(Clone)]
enum Accounts {
    /// The sandbox on hold and the accounts of [`DEMO_ACCOUNTS`].
    Demo,
    /// Account `acme` (password `acme1234`) sending through a fake SMSGate
    /// upstream named `phone`.
    Phone {
        base_url: String,
        username: String,
        password: String,
        device_id: String,
    },
    /// `[[upstreams]]` and `[[accounts]]` tables as given.
    Custom(String),
}

/// What a test broker is made of, kept so that it can be restarted alike.
#[derive(Clone)]
struct Recipe {
    smpp: String,
    http: String,
    accounts: Accounts,
    upstream_keys: String,
    tls: bool,
    clock: Option<Arc<dyn Clock>>,
    edits: Vec<Edit>,
    settings_from: Option<MakeSettings>,
    /// Started from `dir/broker.toml`, which a reload reads again.
    config_file: bool,
}

/// Builds a [`TestBroker`]; see [`TestBroker::builder`].
pub struct TestBrokerBuilder {
    recipe: Recipe,
    dir: Option<TempDir>,
}

/// The self-signed "localhost" certificate of a broker built with `tls()`.
pub struct Certificate {
    /// PEM, in the broker's data directory.
    pub path: PathBuf,
    pub der: Vec<u8>,
}

/// A running broker and its data directory (`dir/broker.db`).
pub struct TestBroker {
    pub broker: Broker,
    pub dir: TempDir,
    certificate: Option<Certificate>,
    recipe: Recipe,
}

impl TestBroker {
    /// A broker with the demo accounts and a sandbox on hold, quick failed-bind
    /// back-off, and everything else at its defaults until a builder method
    /// says otherwise.
    pub fn builder() -> TestBrokerBuilder {
        TestBrokerBuilder {
            recipe: Recipe {
                smpp: String::new(),
                http: String::new(),
                accounts: Accounts::Demo,
                upstream_keys: String::new(),
                tls: false,
                clock: None,
                edits: Vec::new(),
                settings_from: None,
                config_file: false,
            },
            dir: None,
        }
    }
}

impl TestBrokerBuilder {
    /// TOML lines inside `[smpp]`, such as `max_pdu_size = 4096`.
    pub fn smpp(mut self, lines: &str) -> Self {
        self.recipe.smpp.push_str(lines);
        self.recipe.smpp.push('\n');
        self
    }

    /// TOML lines inside `[http]`, such as `public_url = "https://…"`.
    pub fn http(mut self, lines: &str) -> Self {
        self.recipe.http.push_str(lines);
        self.recipe.http.push('\n');
        self
    }

    /// Instead of the demo accounts: account `acme` (password `acme1234`)
    /// sending through `fake` as upstream `phone`, with quick retries.
    pub fn upstream(mut self, fake: &FakeSmsGate) -> Self {
        self.recipe.accounts = Accounts::Phone {
            base_url: fake.base_url(),
            username: fake.username().to_owned(),
            password: fake.password().to_owned(),
            device_id: fake.device_id().to_owned(),
        };
        self
    }

    /// TOML lines in the `phone` upstream of `upstream(…)`; a key here replaces
    /// the default of the same name.
    pub fn upstream_keys(mut self, lines: &str) -> Self {
        self.recipe.upstream_keys.push_str(lines);
        self.recipe.upstream_keys.push('\n');
        self
    }

    /// Instead of the demo accounts: these `[[upstreams]]` and `[[accounts]]`.
    pub fn accounts(mut self, tables: &str) -> Self {
        self.recipe.accounts = Accounts::Custom(tables.to_owned());
        self
    }

    /// Message times from `clock` rather than the system's.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.recipe.clock = Some(Arc::new(clock));
        self
    }

    /// A TLS listener too, with a self-signed certificate for "localhost"
    /// ([`TestBroker::certificate`]).
    pub fn tls(mut self) -> Self {
        self.recipe.tls = true;
        self
    }

    /// Changes the settings after they are read, for what TOML lines cannot say
    /// as directly (durations, per-account values).
    pub fn edit(mut self, edit: impl Fn(&mut Settings) + Send + Sync + 'static) -> Self {
        self.recipe.edits.push(Arc::new(edit));
        self
    }

    /// Settings made by `make` from the data directory, instead of the builder's
    /// TOML (a test of a config file as shipped).
    pub fn settings_from(
        mut self,
        make: impl Fn(&Path) -> Settings + Send + Sync + 'static,
    ) -> Self {
        self.recipe.settings_from = Some(Arc::new(make));
        self
    }

    /// Started from a file, `dir/broker.toml` ([`TestBroker::config_path`]),
    /// which a reload reads again; edits do not go into the file.
    pub fn config_file(mut self) -> Self {
        self.recipe.config_file = true;
        self
    }

    /// On the database in `dir`, left by an earlier broker.
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// The settings alone, for tests that run a part of the broker themselves;
    /// with the directory they point into.
    pub fn settings(self) -> (TempDir, Settings) {
        let dir = self.dir.unwrap_or_else(new_dir);
        let (settings, _) = self.recipe.settings(dir.path());
        (dir, settings)
    }

    pub async fn start(self) -> TestBroker {
        let dir = self.dir.unwrap_or_else(new_dir);
        let recipe = self.recipe;
        let (settings, certificate) = recipe.settings(dir.path());
        let clock = recipe.clock.clone().unwrap_or(Arc::new(SystemClock));
        let source = match recipe.config_file {
            true => {
                let path = dir.path().join(CONFIG_FILE);
                let text = recipe.toml(dir.path(), certificate.as_ref());
                std::fs::write(&path, text).expect("write broker.toml");
                ConfigSource::File(path)
            }
            false => ConfigSource::Given,
        };
        let broker = Broker::start_from(source, settings, clock)
            .await
            .expect("broker starts");
        TestBroker {
            broker,
            dir,
            certificate,
            recipe,
        }
    }
}

fn new_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

impl Recipe {
    fn settings(&self, dir: &Path) -> (Settings, Option<Certificate>) {
        let certificate = self.tls.then(|| make_certificate(dir));
        let mut settings = match &self.settings_from {
            Some(make) => make(dir),
            None => {
                let text = self.toml(dir, certificate.as_ref());
                Settings::from_toml(&text, "test", std::iter::empty())
                    .expect("test config is valid")
            }
        };
        for edit in &self.edits {
            edit(&mut settings);
        }
        (settings, certificate)
    }

    fn toml(&self, dir: &Path, certificate: Option<&Certificate>) -> String {
        let tls = match certificate {
            Some(cert) => format!(
                "[smpp.tls]\nbind = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.path.display(),
                dir.join("key.pem").display()
            ),
            None => String::new(),
        };
        format!(
            r#"
[smpp]
bind = "127.0.0.1:0"
failed_bind_delay = "1ms"
failed_bind_delay_max = "10ms"
{smpp}
{tls}
[http]
bind = "127.0.0.1:0"
{http}
[admin]
bind = "127.0.0.1:0"
[store]
path = "{db}"

{accounts}
"#,
            smpp = self.smpp,
            http = self.http,
            db = dir.join("broker.db").display(),
            accounts = self.accounts_toml(),
        )
    }

    fn accounts_toml(&self) -> String {
        match &self.accounts {
            Accounts::Demo => DEMO_ACCOUNTS.to_owned(),
            Accounts::Custom(tables) => tables.clone(),
            Accounts::Phone {
                base_url,
                username,
                password,
                device_id,
            } => {
                let overridden: Vec<&str> = self
                    .upstream_keys
                    .lines()
                    .filter_map(|line| line.split('=').next())
                    .map(str::trim)
                    .collect();
                let defaults: String = UPSTREAM_DEFAULTS
                    .iter()
                    .filter(|(key, _)| !overridden.contains(key))
                    .map(|(key, value)| format!("{key} = {value}\n"))
                    .collect();
                format!(
                    r#"
[[upstreams]]
name = "phone"
kind = "smsgate"
mode = "cloud"
base_url = "{base_url}"
username = "{username}"
password = "{password}"
device_id = "{device_id}"
{defaults}{keys}
[[accounts]]
system_id = "acme"
password = "acme1234"
upstream = "phone"
"#,
                    keys = self.upstream_keys,
                )
            }
        }
    }
}

/// A self-signed certificate for "localhost", written as PEM files into `dir`
/// (cert.pem, key.pem).
fn make_certificate(dir: &Path) -> Certificate {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let path = dir.join("cert.pem");
    std::fs::write(&path, cert.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).expect("write key.pem");
    Certificate {
        path,
        der: cert.cert.der().to_vec(),
    }
}

impl TestBroker {
    /// The plain-TCP SMPP listener.
    pub fn addr(&self) -> SocketAddr {
        self.broker.smpp_addr()
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.broker.tls_addr().expect("TLS listener")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.broker.http_addr()
    }

    /// The operator console's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.broker.admin_addr()
    }

    /// The certificate of a broker built with `tls()`.
    pub fn certificate(&self) -> &Certificate {
        self.certificate
            .as_ref()
            .expect("a broker built with tls()")
    }

    /// The file a broker built with `config_file()` was started from.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    pub fn db(&self) -> Db {
        Db::at(self.dir.path())
    }

    /// Stops the broker gracefully; its data directory, for a broker started
    /// after it (`builder().dir(dir)`).
    pub async fn stop(self) -> TempDir {
        self.broker.shutdown().await;
        self.dir
    }

    /// Stops the broker gracefully and starts one made alike on the same database.
    pub async fn restart(self) -> TestBroker {
        let recipe = self.recipe.clone();
        let dir = self.stop().await;
        TestBrokerBuilder {
            recipe,
            dir: Some(dir),
        }
        .start()
        .await
    }

    /// The broker's `GET /metrics` text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.http_addr());
        reqwest::get(url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until the metrics text has `line`.
    pub async fn until_metric(&self, line: &str) {
        eventually(PATIENCE, &format!("{line:?} in /metrics"), || async {
            let text = self.metrics_text().await;
            if text.contains(line) {
                Ok(())
            } else {
                Err(Multiline(text))
            }
        })
        .await
    }

    /// POSTs an unsigned webhook event for `upstream`; returns the status code.
    pub async fn post_event(&self, upstream: &str, body: &serde_json::Value) -> u16 {
        post_event(self.http_addr(), upstream, body).await
    }

    /// The phone behind upstream `phone` reports `message_id` delivered
    /// (unsigned webhooks: no signing_key).
    pub async fn report_delivered(&self, message_id: &str) {
        let body = serde_json::json!({"event": "sms:delivered", "payload": {"messageId": message_id,
            "deliveredAt": "2026-11-22T15:10:00.000Z"}});
        assert_eq!(self.post_event("phone", &body).await, 200);
    }

    /// Waits until the broker has let go of every session of `system_id` (a
    /// closed connection is unregistered by its session task a moment after the
    /// close).
    pub async fn wait_until_no_sessions(&self, system_id: &str) {
        let what = format!("the broker lets go of every session of {system_id}");
        eventually(PATIENCE, &what, || async {
            self.broker
                .registry()
                .sessions(system_id)
                .is_empty()
                .then_some(())
        })
        .await
    }

    /// Asks the broker's store about each of demo's message_ids: known, with
    /// query_sm's `state`, error_code 0, and a final time exactly when the state
    /// is final (not ENROUTE, 1). Returns the final times.
    pub async fn assert_stored(&self, ids: &[&str], state: u8) -> Vec<Option<i64>> {
        let mut finals = Vec::new();
        for id in ids {
            let status = self
                .broker
                .store()
                .query("demo", id, "")
                .await
                .expect("the store answers")
                .unwrap_or_else(|| panic!("the store knows message_id {id}"));
            assert_eq!(status.message_id, *id);
            assert_eq!(status.smpp_state, state, "message {id}: {status:?}");
            assert_eq!(status.error_code, 0, "message {id}: {status:?}");
            assert_eq!(
                status.final_at.is_some(),
                state != 1,
                "a final time only once final: {status:?}"
            );
            finals.push(status.final_at);
        }
        finals
    }
}

/// POSTs an unsigned webhook event for `upstream` to the broker whose HTTP port
/// is `http_addr`; returns the status code.
pub async fn post_event(http_addr: SocketAddr, upstream: &str, body: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{http_addr}/webhooks/{upstream}"))
        .body(body.to_string())
        .send()
        .await
        .expect("POST the webhook")
        .status()
        .as_u16()
}

/// A text shown as it is in a failure message, line breaks included.
struct Multiline(String);

impl std::fmt::Debug for Multiline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0)
    }
}
