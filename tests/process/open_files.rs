//! The open-file limit, with the real binary started under a low `ulimit -n`: it
//! raises its soft limit to the hard one, fits both listeners' connection caps
//! under it, and while more idle HTTP connections come in than the whole limit
//! allows, an ESME still binds and submits and `/healthz` still answers.

use std::time::Duration;

use testkit::process::write_config;

use crate::launch;
use smpp_broker::smpp::pdu::{Address, BindKind, Body, Sm};
use testkit::{Esme, PATIENCE};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_and_healthz_stay_reachable_while_idle_http_connections_exceed_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\n",
    );
    let broker = launch(&config).open_files(256, 320).spawn();

    // More idle connections than the broker has descriptors, kept open. When the
    // listen backlog (128) is full the kernel drops the SYN and connecting takes
    // a second try: such a connection is given up on after a second. A broker
    // that stops accepting fills its backlog for good.
    let mut flood = Vec::new();
    for _ in 0..400 {
        let connecting = TcpStream::connect(broker.http_addr);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connecting).await {
            flood.push(stream);
        }
    }

    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let submit = Sm {
        dest: Address::new(1, 1, "4917600000"),
        short_message: bytes::Bytes::from_static(b"still here"),
        ..Default::default()
    };
    let answer = esme.request(Body::SubmitSm(submit)).await;
    assert!(answer.command_status.is_ok(), "{answer:?}");

    let health = reqwest::Client::new()
        .get(format!("http://{}/healthz", broker.http_addr))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), 200);
    // More connections came in than the whole open-file limit (closing the
    // longest waiting ones made room for them).
    assert!(flood.len() > 320, "{} connected", flood.len());

    drop(esme);
    drop(flood);
    broker.signal("-TERM");
    let (exit, log) = tokio::task::spawn_blocking(move || broker.wait())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}\n{log}");
    // Raised from 256 to the hard limit, and the caps fitted under it: 320 less
    // the reserve of 96 (64, and the console's 32) leaves 224, a quarter of it
    // for HTTP.
    let raised = log
        .lines()
        .find(|l| l.contains("open-file limit"))
        .expect("the limit is logged");
    for field in [
        r#""soft_before":"256""#,
        r#""soft":"320""#,
        r#""hard":"320""#,
    ] {
        assert!(raised.contains(field), "{field} in {raised}");
    }
    let caps = log
        .lines()
        .find(|l| l.contains("lowered to fit"))
        .expect("the lowered caps are logged");
    assert!(caps.contains(r#""http_max_connections":56"#), "{caps}");
    assert!(caps.contains(r#""smpp_max_connections":168"#), "{caps}");
    assert!(!log.contains("accept failed"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}
