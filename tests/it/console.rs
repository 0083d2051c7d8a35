//! The operator console (`[admin]`): the overview and `/api/status` show what
//! an operator looks for, and a console with a login refuses without it.

use std::time::{Duration, Instant};

use base64::Engine;
use smpp_broker::smpp::pdu::{BindKind, Body, CommandStatus};
use testkit::sms::sm;
use testkit::{Esme, TestBroker};

async fn get(url: &str, login: Option<(&str, &str)>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some((user, password)) = login {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("the console answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_overview_shows_accounts_sessions_queues_and_upstreams() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    for text in ["one", "two"] {
        let ok = esme
            .request(Body::SubmitSm(sm(0, 0, text.as_bytes())))
            .await;
        assert_eq!(ok.command_status, CommandStatus::ESME_ROK);
    }
    let mut nowhere = sm(0, 0, b"nowhere");
    nowhere.dest = smpp_broker::smpp::pdu::Address::new(1, 1, "");
    let refused = esme.request(Body::SubmitSm(nowhere)).await;
    assert_eq!(refused.command_status, CommandStatus::ESME_RINVDSTADR);
    let local = esme.local_addr().to_string();

    let (code, json) = get(&format!("http://{}/api/status", broker.admin_addr()), None).await;
    assert_eq!(code, 200, "{json}");
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["node"]["health"], "ok");
    assert!(status["node"]["store"]
        .as_str()
        .is_some_and(|s| s.starts_with("SQLite ")));
    let demo = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["system_id"] == "demo")
        .expect("the demo account");
    assert_eq!(demo["sessions"][0]["bind_type"], "transceiver");
    assert_eq!(demo["sessions"][0]["peer"], local);
    assert_eq!(
        demo["waiting"], 2,
        "two messages wait: the sandbox is on hold"
    );
    assert_eq!(demo["by_state"]["queued"], 2);
    assert_eq!(demo["submits"]["per_second_1m"], 2.0 / 60.0);
    assert_eq!(demo["submits"]["refusals"]["ESME_RINVDSTADR"], 1);
    let rxonly = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["system_id"] == "rxonly")
        .expect("every configured account, bound or not");
    assert!(rxonly["sessions"].as_array().unwrap().is_empty());
    assert_eq!(status["upstreams"][0]["name"], "sandbox");
    assert_eq!(status["upstreams"][0]["state"], "hold");
    assert_eq!(status["upstreams"][0]["in_flight"], 0);
    assert!(status["upstreams"][0]["last_error"].is_null());

    let (code, html) = get(&format!("http://{}/", broker.admin_addr()), None).await;
    assert_eq!(code, 200);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    for wanted in [
        "demo",
        "transceiver from",
        &local,
        "queued 2",
        "sandbox",
        "hold",
    ] {
        assert!(
            html.contains(wanted),
            "{wanted:?} missing from the page:\n{html}"
        );
    }
}

#[tokio::test]
async fn a_console_with_a_login_refuses_without_it_and_slows_wrong_ones() {
    let hash = hash_of("s3cret");
    let broker = TestBroker::builder()
        .edit(move |settings| {
            settings.admin.username = Some("admin".to_owned());
            settings.admin.password_hash = Some(smpp_broker::config::Secret::new(hash.clone()));
        })
        .start()
        .await;
    let url = format!("http://{}/api/status", broker.admin_addr());

    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")));
    // Wrong ones: refused, and the next attempt from the address waits.
    assert_eq!(get(&url, Some(("admin", "wrong"))).await.0, 401);
    let started = Instant::now();
    assert_eq!(get(&url, Some(("root", "s3cret"))).await.0, 401);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "a second wrong login came back after {:?}",
        started.elapsed()
    );
    let (code, json) = get(&url, Some(("admin", "s3cret"))).await;
    assert_eq!(code, 200, "{json}");
    assert!(json.contains("\"accounts\""));
    // The header's password never reaches the page.
    let auth = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
    assert!(!json.contains(&auth) && !json.contains("s3cret"));
}

fn hash_of(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"console-test-salt").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

pub(crate) async fn status(broker: &TestBroker) -> serde_json::Value {
    let (code, json) = get(&format!("http://{}/api/status", broker.admin_addr()), None).await;
    assert_eq!(code, 200, "{json}");
    serde_json::from_str(&json).unwrap()
}

pub(crate) async fn post(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url);
    if let Some(token) = token {
        request = request.header("X-Csrf-Token", token);
    }
    let response = request.send().await.expect("the console answers");
    let code = response.status().as_u16();
    (code, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn an_operator_releases_and_holds_an_upstream_and_disconnects_a_session() {
    let broker = TestBroker::builder().start().await;
    let admin = broker.admin_addr();
    let token = status(&broker).await["csrf_token"]
        .as_str()
        .expect("the token scripts send")
        .to_owned();
    let release = format!("http://{admin}/api/upstreams/sandbox/release");

    // Without the token, or with another, nothing changes.
    assert_eq!(post(&release, None).await.0, 403);
    assert_eq!(post(&release, Some("0123")).await.0, 403);
    assert_eq!(status(&broker).await["upstreams"][0]["state"], "hold");

    let (code, body) = post(&release, Some(&token)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"changed\":true"), "{body}");
    assert_eq!(status(&broker).await["upstreams"][0]["state"], "sending");
    // A browser's form: the token in the form, then back to the overview.
    let held = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{admin}/api/upstreams/sandbox/hold"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(held.status().as_u16(), 303);
    assert_eq!(held.headers()["location"], "/");
    assert_eq!(status(&broker).await["upstreams"][0]["state"], "hold");
    assert_eq!(
        post(
            &format!("http://{admin}/api/upstreams/nothing/hold"),
            Some(&token)
        )
        .await
        .0,
        404
    );

    // A bound session, disconnected: it is sent unbind and closed.
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let demo = status(&broker).await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["system_id"] == "demo")
        .cloned()
        .unwrap();
    let session_id = demo["sessions"][0]["session_id"].as_u64().unwrap();
    let url = format!("http://{admin}/api/sessions/{session_id}/disconnect");
    assert_eq!(post(&url, None).await.0, 403);
    let (code, body) = post(&url, Some(&token)).await;
    assert_eq!(code, 200, "{body}");
    esme.expect_unbind_and_close(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&broker).await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["system_id"] == "demo" && !a["sessions"].as_array().unwrap().is_empty())
    {
        assert!(Instant::now() < deadline, "the session is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post(&url, Some(&token)).await.0, 404, "no longer bound");
}

#[tokio::test]
async fn the_overview_draws_the_traffic_of_the_last_hour() {
    let broker = TestBroker::builder()
        .accounts(
            "[[upstreams]]\nname = \"quick\"\nkind = \"sandbox\"\nsent_after = \"0s\"\n\
             delivered_after = \"0s\"\n[[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\n\
             upstream = \"quick\"\n",
        )
        .start()
        .await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    for n in 0..5 {
        let text = format!("message {n}");
        let ok = esme
            .request(Body::SubmitSm(sm(0, 0, text.as_bytes())))
            .await;
        assert_eq!(ok.command_status, CommandStatus::ESME_ROK);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let traffic = status(&broker).await["traffic"].clone();
        let minutes = traffic.as_array().expect("the last hour's minutes");
        assert_eq!(minutes.len(), 60);
        let total = |key: &str| {
            minutes
                .iter()
                .map(|m| m[key].as_u64().unwrap())
                .sum::<u64>()
        };
        // A report may overtake the upstream's acceptance (an instant
        // sandbox): that message is delivered without having counted as sent.
        if (total("submitted"), total("delivered")) == (5, 5) && total("sent") >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "traffic: {traffic}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, html) = get(&format!("http://{}/", broker.admin_addr()), None).await;
    assert!(html.contains("<svg id=\"traffic\""), "{html}");
    assert!(html.contains(">delivered 5</text>"), "{html}");
}

/// Debian's chromium, as `.ci/run` installs it.
fn chromium() -> std::path::PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no chromium: install Debian's chromium package \
                 (apt-get install chromium; .ci/run does)"
            )
        })
}

/// Runs headless chromium on `url` with `args`; what it printed.
async fn headless(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("chromium within a minute")
        .expect("chromium runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A real browser loads the overview while traffic flows and finds what a
/// person would look for: the account, its bound session, the queue, the
/// upstream's state and the traffic chart; and it takes a screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_shows_the_overview() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let text = format!("browser {n}");
        ids.push(testkit::sms::submit_ok(&mut esme, sm(0, 0, text.as_bytes())).await);
    }
    let url = format!("http://{}/", broker.admin_addr());
    let dom = headless(&["--dump-dom"], &url).await;
    for wanted in [
        "<h1>smpp-broker",
        "<b>demo</b>",
        &format!("transceiver from {}", esme.local_addr()),
        "queued 3",
        "<b>sandbox</b>",
        ">hold</span>",
        "<svg id=\"traffic\"",
        ">submitted 3</text>",
    ] {
        assert!(
            dom.contains(wanted),
            "{wanted:?} not in the page chromium loaded:\n{dom}"
        );
    }
    // A message found by its id, with its life.
    let found = headless(
        &["--dump-dom"],
        &format!("http://{}/messages?q={}", broker.admin_addr(), ids[1]),
    )
    .await;
    for wanted in [
        format!("<h2 class=\"message\">{}</h2>", ids[1]),
        "from account <b>demo</b>".to_owned(),
        "now <b>queued</b>".to_owned(),
    ] {
        assert!(found.contains(&wanted), "{wanted:?} not in:\n{found}");
    }
    let shot = tempfile::tempdir().unwrap();
    let png = shot.path().join("console.png");
    headless(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
        ],
        &url,
    )
    .await;
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("CONSOLE_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

#[tokio::test]
async fn an_operator_finds_a_message_by_its_id_or_its_destination() {
    let broker = TestBroker::builder().start().await;
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let to = |addr: &str| {
        let mut message = sm(0, 0, b"find me");
        message.dest = smpp_broker::smpp::pdu::Address::new(1, 1, addr);
        message
    };
    let first = testkit::sms::submit_ok(&mut esme, to("4917612345")).await;
    let second = testkit::sms::submit_ok(&mut esme, to("4917612345")).await;
    let other = testkit::sms::submit_ok(&mut esme, to("4917699999")).await;
    let admin = broker.admin_addr();

    let (code, json) = get(&format!("http://{admin}/api/messages?q={other}"), None).await;
    assert_eq!(code, 200, "{json}");
    let found: serde_json::Value = serde_json::from_str(&json).unwrap();
    let messages = found["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["message_id"].to_string(), other);
    assert_eq!(messages[0]["system_id"], "demo");
    assert_eq!(messages[0]["state"], "queued");

    let (_, json) = get(&format!("http://{admin}/api/messages?q=4917612345"), None).await;
    let found: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<String> = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].to_string())
        .collect();
    assert_eq!(ids, [second.clone(), first.clone()], "newest first");

    let (code, html) = get(&format!("http://{admin}/messages?q=4917612345"), None).await;
    assert_eq!(code, 200);
    assert!(
        html.contains(&format!("<h2 class=\"message\">{first}</h2>")),
        "{html}"
    );
    let (_, html) = get(&format!("http://{admin}/messages?q=%3Cb%3Enothing"), None).await;
    assert!(html.contains("id=\"none\""), "{html}");
    assert!(
        html.contains("&lt;b&gt;nothing"),
        "the query is escaped: {html}"
    );
    let (_, overview) = get(&format!("http://{admin}/"), None).await;
    assert!(
        overview.contains("action=\"/messages\""),
        "a search form on the overview"
    );
}

#[tokio::test]
async fn a_found_message_shows_its_whole_life_to_the_receipt_its_esme_took() {
    let broker = TestBroker::builder()
        .accounts(
            "[[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n\
             sent_after = \"10ms\"\ndelivered_after = \"20ms\"\n\
             [[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\n",
        )
        .start()
        .await;
    let heard = std::sync::Arc::default();
    let receiver = testkit::sms::receive_receipts(
        broker.addr(),
        "demo",
        "demo1234",
        std::sync::Arc::clone(&heard),
    );
    // A transmitter: the receipt goes to the receiver, which answers it.
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    let local = esme.local_addr().to_string();
    let mut asks = sm(0, 0, b"a whole life");
    asks.registered_delivery = 1;
    let id = testkit::sms::submit_ok(&mut esme, asks).await;
    let admin = broker.admin_addr();

    let life = testkit::eventually::eventually(
        testkit::eventually::PATIENCE,
        "the receipt's deliver_sm acknowledged",
        || async {
            let (_, json) = get(&format!("http://{admin}/api/messages?q={id}"), None).await;
            let found: serde_json::Value = serde_json::from_str(&json).unwrap();
            let events = found["messages"][0]["events"].clone();
            let names: Vec<String> = events
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event"].as_str().unwrap().to_owned())
                .collect();
            if names.iter().any(|n| n == "receipt_delivered") {
                Ok(found["messages"][0].clone())
            } else {
                Err(names)
            }
        },
    )
    .await;
    let steps: Vec<(&str, &str)> = life["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert!(steps.contains(&("upstream", "Sent")), "{steps:?}");
    assert_eq!(life["session_bind_type"], "transmitter");
    assert_eq!(life["session_peer"], local);
    assert_eq!(life["upstream"], "sandbox");
    assert_eq!(life["upstream_state"], "Delivered", "{life}");
    assert!(life["sent_at"].as_i64() <= life["events"][0]["at"].as_i64());
    assert!(life["events"]
        .as_array()
        .unwrap()
        .windows(2)
        .all(|w| w[0]["at"].as_i64() <= w[1]["at"].as_i64()));

    let (_, html) = get(&format!("http://{admin}/messages?q={id}"), None).await;
    for wanted in [
        "<b>handed to sandbox</b> as",
        "upstream state</b> Sent",
        "receipt delivered,</b> stored",
        "deliver_sm to session #",
        "(transmitter from 127.0.0.1:",
        "final <b>delivered</b>",
    ] {
        assert!(html.contains(wanted), "{wanted} in {html}");
    }
    receiver.abort();
}
