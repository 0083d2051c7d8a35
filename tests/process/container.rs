//! The container as operators run it, checked without a Docker engine: the compose
//! file and the Dockerfile parse and agree with each other, with the repository
//! and with config/docker.toml; and the broker binary runs with that very config
//! file (only the paths and listen addresses moved to a temporary place through
//! `SMPP_BROKER__` variables, as an operator could).

use std::path::{Path, PathBuf};

use testkit::db::Db;

use crate::{launch, BIN};
use smpp_broker::fd_limit;
use smpp_broker::smpp::pdu::BindKind;
use smpp_broker::Settings;
use testkit::Esme;
use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    docs.into_iter().next().expect("one YAML document")
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

/// The config file the container reads: compose's SMPP_BROKER_CONFIG, under the
/// directory compose mounts from the repository.
fn container_config(service: &Yaml) -> (String, PathBuf) {
    let in_container = service["environment"]["SMPP_BROKER_CONFIG"]
        .as_str()
        .expect("environment SMPP_BROKER_CONFIG")
        .to_owned();
    for volume in strings(&service["volumes"]) {
        let mut parts = volume.split(':');
        let (host, target) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        if let Some(rest) = in_container.strip_prefix(&format!("{target}/")) {
            if host.starts_with("./") {
                return (in_container.clone(), repo(host).join(rest));
            }
        }
    }
    panic!("no volume of the repository holds {in_container}");
}

#[test]
fn compose_dockerfile_and_config_agree() {
    let compose = compose();
    let service = &compose["services"]["broker"];
    assert!(!service.is_badvalue(), "a service named broker");
    assert_eq!(
        service["build"].as_str(),
        Some("."),
        "built from this repository"
    );
    assert!(repo("Dockerfile").exists());
    assert_eq!(service["restart"].as_str(), Some("unless-stopped"));

    // The config file it names exists and is valid as it stands.
    let (in_container, on_host) = container_config(service);
    assert!(
        on_host.exists(),
        "{} is not in the repository",
        on_host.display()
    );
    let text = std::fs::read_to_string(&on_host).unwrap();
    let settings = Settings::from_toml(&text, "config/docker.toml", std::iter::empty())
        .expect("config/docker.toml is valid");

    // Published ports are the ports the config listens on, on every interface.
    let tls = settings
        .smpp
        .tls
        .as_ref()
        .expect("[smpp.tls] is configured");
    let listening = [settings.smpp.bind, tls.bind, settings.http.bind];
    let published: Vec<(u16, u16)> = strings(&service["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.split_once(':').expect("HOST:CONTAINER");
            (host.parse().unwrap(), container.parse().unwrap())
        })
        .collect();
    assert_eq!(published, [(2775, 2775), (2776, 2776), (8080, 8080)]);
    for (addr, (_, container_port)) in listening.iter().zip(&published) {
        assert_eq!(addr.port(), *container_port, "{addr}");
        assert!(addr.ip().is_unspecified(), "{addr} must listen on 0.0.0.0");
    }

    // The database and the generated TLS pair live on the named volume.
    let volumes = strings(&service["volumes"]);
    let data = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/data"))
        .expect("a volume at /data");
    assert!(
        !compose["volumes"][data].is_badvalue(),
        "volume {data} is declared at the top level"
    );
    assert!(settings.store.sqlite_path().starts_with("/data"));
    assert!(tls.generate && tls.cert.starts_with("/data") && tls.key.starts_with("/data"));
    assert!(volumes.iter().any(|v| v == "./config:/etc/smpp-broker:ro"));

    // The open-file limit holds both listeners' connection caps as configured.
    let nofile = &service["ulimits"]["nofile"];
    let (soft, hard) = (nofile["soft"].as_i64(), nofile["hard"].as_i64());
    assert!(soft.is_some() && soft == hard, "ulimits nofile soft = hard");
    let caps = fd_limit::connection_caps(
        soft.map(|n| n as u64),
        fd_limit::reserve(&settings),
        settings.smpp.max_connections,
        settings.http.max_connections,
    );
    assert_eq!(
        (caps.smpp, caps.http),
        (settings.smpp.max_connections, settings.http.max_connections),
        "ulimits nofile {soft:?} is too low for the configured connections"
    );

    // The healthcheck asks /healthz through the broker binary itself.
    let check = strings(&service["healthcheck"]["test"]);
    assert_eq!(check, ["CMD", "smpp-broker", "healthcheck"]);

    // The Dockerfile: two stages, its COPY sources exist, sqlite3 inside, a
    // non-root user, the same ports and config path.
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("FROM ")).count(), 2);
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                repo(source).exists(),
                "Dockerfile copies {source}, which is missing"
            );
        }
    }
    assert!(dockerfile.contains("sqlite3"), "sqlite3 in the image");
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert_ne!(user.trim(), "root");
    assert!(lines.contains(&"EXPOSE 2775 2776 8080"));
    assert!(lines.contains(&format!("ENV SMPP_BROKER_CONFIG={in_container}").as_str()));
    assert!(lines.contains(&format!("COPY config/docker.toml {in_container}").as_str()));
    assert!(lines.contains(&"ENTRYPOINT [\"smpp-broker\"]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_with_the_container_config() {
    let (_, config) = container_config(&compose()["services"]["broker"]);
    let data = tempfile::tempdir().unwrap();
    let in_data = |name: &str| data.path().join(name).display().to_string();
    let (db, cert, key) = (
        in_data("broker.db"),
        in_data("tls/cert.pem"),
        in_data("tls/key.pem"),
    );
    let broker = launch(&config)
        .envs([
            ("SMPP_BROKER__SMPP__BIND", "127.0.0.1:0"),
            ("SMPP_BROKER__SMPP__TLS__BIND", "127.0.0.1:0"),
            ("SMPP_BROKER__HTTP__BIND", "127.0.0.1:0"),
            ("SMPP_BROKER__STORE__PATH", &db),
            ("SMPP_BROKER__SMPP__TLS__CERT", &cert),
            ("SMPP_BROKER__SMPP__TLS__KEY", &key),
        ])
        .spawn();
    // The self-signed pair was written, and the demo account binds.
    assert!(Path::new(&cert).exists() && Path::new(&key).exists());
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;

    // The container's healthcheck command, pointed at this broker.
    let url = format!("http://{}/healthz", broker.http_addr);
    let healthy = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--url", &url])
        .output()
        .await
        .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    let dead = format!("http://127.0.0.1:{}/healthz", free_port());
    let unhealthy = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--url", &dead])
        .output()
        .await
        .unwrap();
    assert!(
        !unhealthy.status.success(),
        "nothing listens there: {unhealthy:?}"
    );

    // The README's SQL works on the database the broker made.
    let depth: i64 = Db::at(data.path())
        .scalar("SELECT count(*) FROM queue_depth")
        .await;
    assert_eq!(depth, 0);
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
