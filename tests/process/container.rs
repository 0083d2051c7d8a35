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
    compose_file("docker-compose.yml")
}

fn compose_file(path: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(path)).expect("valid YAML");
    docs.into_iter().next().expect("one YAML document")
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

/// A service's published ports: (host, container).
fn published(service: &Yaml) -> Vec<(u16, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.split_once(':').expect("HOST:CONTAINER");
            (host.parse().unwrap(), container.parse().unwrap())
        })
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
    let published = published(service);
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
            ("SMPP_BROKER__ADMIN__BIND", "127.0.0.1:0"),
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

/// `${NAME:-default}` as compose fills it when NAME is not set.
fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's `SMPP_BROKER__` overrides, as the container's environment has them.
fn overrides(service: &Yaml) -> Vec<(String, String)> {
    service["environment"]
        .as_hash()
        .expect("an environment map")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                with_defaults(v.as_str().unwrap()),
            )
        })
        .filter(|(k, _)| k.starts_with("SMPP_BROKER__"))
        .collect()
}

#[test]
fn the_cluster_compose_file_runs_two_nodes_on_one_postgres() {
    let compose = compose_file("docker-compose.cluster.yml");
    let postgres = &compose["services"]["postgres"];
    let env = &postgres["environment"];
    let (user, database) = (
        env["POSTGRES_USER"].as_str().unwrap(),
        env["POSTGRES_DB"].as_str().unwrap(),
    );
    let password = with_defaults(env["POSTGRES_PASSWORD"].as_str().unwrap());
    assert!(postgres["healthcheck"]["test"][1]
        .as_str()
        .is_some_and(|t| t.contains("pg_isready")));

    let mut host_ports = Vec::new();
    let mut node_ids = Vec::new();
    let mut data_volumes = Vec::new();
    for name in ["broker-a", "broker-b"] {
        let service = &compose["services"][name];
        assert_eq!(service["build"].as_str(), Some("."), "{name} is built here");
        assert_eq!(
            service["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy"),
            "{name} starts once PostgreSQL answers"
        );
        let (_, on_host) = container_config(service);
        let text = std::fs::read_to_string(&on_host).unwrap();
        let settings = Settings::from_toml(&text, "config/cluster.toml", overrides(service))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let url = settings
            .store
            .url
            .as_ref()
            .expect("a PostgreSQL url")
            .expose();
        assert_eq!(
            url,
            format!("postgres://{user}:{password}@postgres:5432/{database}"),
            "{name} reaches the postgres service as its user and database"
        );
        assert!(
            settings.store.path.is_none(),
            "{name}: no SQLite path beside the url"
        );
        node_ids.push(settings.store.node_id());

        let tls = settings.smpp.tls.as_ref().expect("[smpp.tls]");
        let listening = [
            settings.smpp.bind.port(),
            tls.bind.port(),
            settings.http.bind.port(),
        ];
        let published = published(service);
        assert_eq!(
            published.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            listening,
            "{name} publishes the ports its config listens on"
        );
        host_ports.extend(published.iter().map(|(h, _)| *h));
        let volumes = strings(&service["volumes"]);
        let data = volumes
            .iter()
            .find_map(|v| v.strip_suffix(":/data"))
            .expect("a volume at /data")
            .to_owned();
        assert!(
            !compose["volumes"][data.as_str()].is_badvalue(),
            "{data} declared"
        );
        data_volumes.push(data);
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            ["CMD", "smpp-broker", "healthcheck"]
        );
    }
    let distinct = |items: &[String]| items.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(
        distinct(&node_ids),
        2,
        "each node its own name: {node_ids:?}"
    );
    assert_eq!(distinct(&data_volumes), 2, "each node its own volume");
    let ports: std::collections::HashSet<_> = host_ports.iter().collect();
    assert_eq!(
        ports.len(),
        host_ports.len(),
        "distinct host ports: {host_ports:?}"
    );
}

/// A node of the cluster compose file, run on a real PostgreSQL with its
/// config as it stands (addresses and paths moved by `SMPP_BROKER__`
/// variables); `smpp-broker queues` reads the same database beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_with_the_cluster_config_and_queues_reads_postgres() {
    let compose = compose_file("docker-compose.cluster.yml");
    let (_, config) = container_config(&compose["services"]["broker-a"]);
    let cluster = testkit::postgres::TestPostgres::shared().unwrap_or_else(|err| panic!("{err}"));
    let url = cluster.new_database().unwrap();
    let data = tempfile::tempdir().unwrap();
    let in_data = |name: &str| data.path().join(name).display().to_string();
    let (cert, key) = (in_data("tls/cert.pem"), in_data("tls/key.pem"));
    let env = [
        ("SMPP_BROKER__SMPP__BIND", "127.0.0.1:0"),
        ("SMPP_BROKER__SMPP__TLS__BIND", "127.0.0.1:0"),
        ("SMPP_BROKER__HTTP__BIND", "127.0.0.1:0"),
        ("SMPP_BROKER__ADMIN__BIND", "127.0.0.1:0"),
        ("SMPP_BROKER__SMPP__TLS__CERT", cert.as_str()),
        ("SMPP_BROKER__SMPP__TLS__KEY", key.as_str()),
        ("SMPP_BROKER__STORE__URL", url.as_str()),
        ("SMPP_BROKER__STORE__NODE_ID", "broker-a"),
    ];
    // `migrate` first, as an operator may before starting the nodes.
    let migrated = tokio::process::Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let said = String::from_utf8_lossy(&migrated.stdout);
    assert!(said.contains("schema is up to date"), "{said}");
    assert!(
        said.contains("PostgreSQL postgres://postgres@127.0.0.1"),
        "{said}"
    );

    let broker = launch(&config).envs(env).spawn();
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    testkit::sms::submit_ok(&mut esme, testkit::sms::sm(0, 0, b"queued on postgres")).await;

    let queues = tokio::process::Command::new(BIN)
        .args(["queues", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&queues.stdout);
    assert!(queues.status.success(), "{queues:?}");
    assert!(
        printed.lines().any(|l| l.starts_with("demo ")),
        "the demo account's messages: {printed}"
    );
    let stderr = String::from_utf8_lossy(&queues.stderr);
    assert!(
        !stderr.contains("postgres@"),
        "no URL with credentials: {stderr}"
    );
}
