//! Load generator and measurements for smpp-broker.
//!
//! `smpp-bench sessions --count 1000` starts the release broker binary (next to this
//! one) on a temporary config, binds COUNT transceiver sessions to it, checks every
//! one answers enquire_link, and prints the broker's resident memory before and
//! after, read from /proc/PID/status.
//!
//! `smpp-bench submit` drives durable submit_sm through the same kind of broker
//! process with N sessions keeping W submits outstanding each, then measures the
//! storage-only ceiling in this process: the same stores, inserts and commits with
//! N×W concurrent submitters and no SMPP. Both figures come from one run, so their
//! ratio means something on a noisy machine.
//!
//! `smpp-bench receipts` stores a receipt for each of M messages (through a quick
//! sandbox), then binds R receiver sessions and measures acknowledged deliver_sm/s.
//!
//! `smpp-bench webhooks` posts N incoming-message webhooks from C concurrent
//! clients, each answered only once it is committed, and reports events/s and the
//! answer latency (the phone gives up after 5 s).
//!
//! `smpp-bench binds` measures the bind protections (bench/src/binds.rs).
//!
//! The broker process and the ESME are testkit's (testkit/src/process.rs and
//! testkit/src/esme.rs), the same the tests use.

mod binds;
mod dispatch;
mod pipeline;
mod writer_time;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{BindKind, Body, Pdu};
use testkit::esme::Esme;
use testkit::process::{BrokerProcess, Launch};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Benchmarks for smpp-broker")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Bind many sessions at once and report the broker's memory.
    Sessions {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// The broker binary; defaults to smpp-broker beside this program.
        #[arg(long)]
        broker: Option<PathBuf>,
    },
    /// Durable submit_sm throughput and latency through SMPP, and in the same run the
    /// storage-only ceiling (the same group-commit inserts without SMPP).
    Submit {
        #[arg(long, default_value_t = 8)]
        sessions: usize,
        /// submit_sm outstanding per session.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Receipt fan-out: stores a receipt for each of MESSAGES (through the
    /// sandbox), then measures deliver_sm/s to RECEIVERS receiver sessions, each
    /// deliver_sm answered at once.
    Receipts {
        #[arg(long, default_value_t = 4)]
        receivers: usize,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
    },
    /// Webhook intake under load: EVENTS sms:received webhooks from CLIENTS
    /// concurrent HTTP clients; each 200 means the message is committed.
    Webhooks {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
    },
    /// End to end: transceivers submit with registered_delivery=1 through an
    /// instant sandbox and answer every deliver_sm; receipts/s, submit→receipt
    /// latency, and the intake of the same run.
    Pipeline {
        #[arg(long, default_value_t = 4)]
        sessions: usize,
        #[arg(long, default_value_t = 64)]
        window: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// How fast the outbox drains: MESSAGES taken with the upstreams on hold,
    /// then the broker started again with them sending, timed until none waits.
    Dispatch {
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        /// Sandbox upstreams behind one route (1: the account's `upstream`).
        #[arg(long, default_value_t = 1)]
        upstreams: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
    },
    /// Parallel wrong binds to a password_hash account: the broker's memory, and
    /// the answer time of a known and an unknown system_id.
    Binds {
        #[arg(long, default_value_t = 400)]
        count: usize,
        /// Then this many parallel wrong binds from one address (0: none).
        #[arg(long, default_value_t = 0)]
        from_one_ip: usize,
        #[arg(long)]
        broker: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        BenchCommand::Sessions { count, broker } => runtime.block_on(sessions(count, broker)),
        BenchCommand::Submit {
            sessions,
            window,
            messages,
            broker,
            store,
        } => runtime.block_on(submit(sessions, window, messages, broker, store)),
        BenchCommand::Receipts {
            receivers,
            messages,
            broker,
        } => runtime.block_on(receipts(receivers, messages, broker)),
        BenchCommand::Webhooks {
            clients,
            events,
            broker,
        } => runtime.block_on(webhooks(clients, events, broker)),
        BenchCommand::Pipeline {
            sessions,
            window,
            messages,
            broker,
            store,
        } => runtime.block_on(pipeline::pipeline(
            sessions, window, messages, broker, store,
        )),
        BenchCommand::Dispatch {
            messages,
            upstreams,
            broker,
        } => runtime.block_on(dispatch::dispatch(messages, upstreams, broker)),
        BenchCommand::Binds {
            count,
            from_one_ip,
            broker,
        } => runtime.block_on(binds::binds(count, from_one_ip, broker)),
    }
}

/// Where the benched brokers keep their state: SQLite (the default), or a
/// PostgreSQL database that one or more broker nodes share.
#[derive(clap::Args, Clone, Default)]
struct StoreArgs {
    /// A PostgreSQL database for the brokers (postgres://…; the bench adds to it).
    #[arg(long, conflicts_with = "postgres")]
    store_url: Option<String>,
    /// A throwaway PostgreSQL cluster from Debian's postgresql binaries, for
    /// this run only (fsync and synchronous_commit on, as the broker requires).
    #[arg(long)]
    postgres: bool,
    /// Broker nodes on the PostgreSQL database; sessions are spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

/// The store the benched brokers use.
#[derive(Clone)]
enum Target {
    Sqlite,
    Postgres(String),
}

impl StoreArgs {
    fn target(&self) -> anyhow::Result<Target> {
        if self.nodes == 0 || (self.nodes > 1 && self.store_url.is_none() && !self.postgres) {
            bail!("--nodes above 1 needs PostgreSQL (--postgres or --store-url)");
        }
        if let Some(url) = &self.store_url {
            return Ok(Target::Postgres(url.clone()));
        }
        if self.postgres {
            let cluster = testkit::postgres::TestPostgres::shared()?;
            return Ok(Target::Postgres(cluster.new_database()?));
        }
        Ok(Target::Sqlite)
    }
}

impl Target {
    /// A config's [store] section for node `node` with its files in `dir`.
    fn section(&self, dir: &std::path::Path, node: usize) -> String {
        match self {
            Target::Sqlite => format!("[store]\npath = \"{}\"\n", dir.join("bench.db").display()),
            Target::Postgres(url) => {
                format!(
                    "[store]\nurl = \"{url}\"\nnode_id = \"bench-{node}\"\nmax_connections = 16\n"
                )
            }
        }
    }

    fn describe(&self, nodes: usize) -> String {
        match self {
            Target::Sqlite => "SQLite".to_owned(),
            Target::Postgres(_) => format!("PostgreSQL, {nodes} node(s)"),
        }
    }
}

/// A broker child process on a temporary config, killed on drop.
struct Bench {
    process: BrokerProcess,
    dir: tempfile::TempDir,
}

fn broker_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("smpp-broker");
    if !sibling.exists() {
        bail!(
            "{} not found: build it first (cargo build --release)",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// Upstream settings of the submit benchmark: nothing is dispatched meanwhile.
const HELD_SANDBOX: &str =
    "# Measures acceptance alone: nothing is dispatched meanwhile.\nhold = true";

/// Upstream settings of the receipts benchmark: every message delivered at once.
const QUICK_SANDBOX: &str =
    "sent_after = \"1ms\"\ndelivered_after = \"2ms\"\nrate = 1000000\nmax_in_flight = 512";

async fn start_broker(
    binary: PathBuf,
    max_sessions: usize,
    sandbox: &str,
    more_config: &str,
) -> anyhow::Result<Bench> {
    start_node(
        binary,
        max_sessions,
        sandbox,
        more_config,
        &Target::Sqlite,
        0,
    )
    .await
}

/// `nodes` brokers on `target` (one unless it is PostgreSQL).
async fn start_nodes(
    binary: PathBuf,
    max_sessions: usize,
    sandbox: &str,
    target: &Target,
    nodes: usize,
) -> anyhow::Result<Vec<Bench>> {
    let mut started = Vec::with_capacity(nodes);
    for node in 0..nodes {
        started.push(start_node(binary.clone(), max_sessions, sandbox, "", target, node).await?);
    }
    Ok(started)
}

async fn start_node(
    binary: PathBuf,
    max_sessions: usize,
    sandbox: &str,
    more_config: &str,
    target: &Target,
    node: usize,
) -> anyhow::Result<Bench> {
    let dir = tempfile::tempdir()?;
    let store = target.section(dir.path(), node);
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[smpp]
bind = "127.0.0.1:0"
max_connections = {max_sessions}
[http]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
{store}
[log]
level = "warn,smpp_broker::app=info"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
{sandbox}
[[accounts]]
system_id = "bench"
password = "bench"
upstream = "sandbox"
max_sessions = {max_sessions}
throughput = 10000000
max_queued = 100000000
{more_config}
"#
        ),
    )?;
    let process = Launch::new(&binary, &config)
        .startup_limit(Duration::from_secs(30))
        .start()?;
    Ok(Bench { process, dir })
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A memory figure of /proc/PID/status (VmRSS, VmHWM), in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} not found"))
}

async fn bind_session(
    addr: std::net::SocketAddr,
    kind: BindKind,
) -> anyhow::Result<Esme<TcpStream>> {
    let mut esme = Esme::try_connect(addr).await?;
    let resp = esme.try_bind(kind, "bench", "bench").await?;
    if !resp.command_status.is_ok() {
        bail!("bind refused: {}", resp.command_status);
    }
    Ok(esme)
}

async fn next_pdu(esme: &mut Esme<TcpStream>) -> anyhow::Result<Pdu> {
    esme.try_recv()
        .await?
        .context("broker closed the connection")
}

async fn sessions(count: usize, broker: Option<PathBuf>) -> anyhow::Result<()> {
    let broker = start_broker(broker_binary(broker)?, count, HELD_SANDBOX, "").await?;
    let pid = broker.process.child.id();
    let idle_kib = rss_kib(pid)?;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        let addr = broker.process.addr;
        set.spawn(async move { bind_session(addr, BindKind::Transceiver).await });
    }
    let mut sessions = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        sessions.push(joined??);
    }
    let bind_time = started.elapsed();
    // Every session must still be alive: one enquire_link each.
    for esme in &mut sessions {
        esme.try_send(&Pdu::new(2, Body::EnquireLink)).await?;
    }
    for esme in &mut sessions {
        let resp = next_pdu(esme).await?;
        if resp.body != Body::EnquireLinkResp {
            bail!("unexpected answer {resp:?}");
        }
    }
    let bound_kib = rss_kib(pid)?;
    println!("sessions bound:          {count} (all answered enquire_link)");
    println!(
        "time to bind all:        {:.0} ms",
        bind_time.as_secs_f64() * 1e3
    );
    println!(
        "broker RSS idle:         {:.1} MiB",
        idle_kib as f64 / 1024.0
    );
    println!(
        "broker RSS with sessions: {:.1} MiB",
        bound_kib as f64 / 1024.0
    );
    println!(
        "per session:             {:.1} KiB",
        (bound_kib.saturating_sub(idle_kib)) as f64 / count as f64
    );
    Ok(())
}

/// One session's results: the latency of every submit_sm, in microseconds.
async fn submit_session(
    addr: std::net::SocketAddr,
    window: usize,
    count: usize,
) -> anyhow::Result<Vec<u32>> {
    let bound = bind_session(addr, BindKind::Transmitter).await?;
    let (read_half, mut write_half) = bound.into_inner().into_split();
    let mut stream = tokio_util::codec::FramedRead::new(read_half, SmppCodec::default());
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(vec![None::<Instant>; count + 1]));
    let sender = {
        let permits = std::sync::Arc::clone(&permits);
        let sent_at = std::sync::Arc::clone(&sent_at);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
            for seq in 1..=count {
                permits.acquire().await?.forget();
                Pdu::new(seq as u32 + 1, Body::SubmitSm(bench_message(seq))).encode(&mut buf);
                sent_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[seq] =
                    Some(Instant::now());
                // Write only when no more can go out at once: fewer syscalls, same order.
                if permits.available_permits() == 0 || seq == count {
                    write_half.write_all(&buf).await?;
                    buf.clear();
                }
            }
            Ok::<_, anyhow::Error>(write_half)
        })
    };
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        let frame = stream.next().await.context("broker closed the session")??;
        let Frame::Pdu(bytes) = frame else {
            bail!("invalid frame")
        };
        let pdu = Pdu::decode(&bytes)?;
        if !pdu.command_status.is_ok() {
            bail!("submit refused: {}", pdu.command_status);
        }
        let seq = pdu.sequence_number as usize - 1;
        let started = sent_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[seq]
            .context("response to an unsent submit")?;
        latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        permits.add_permits(1);
    }
    sender.await??;
    Ok(latencies)
}

fn bench_message(n: usize) -> smpp_broker::smpp::pdu::Sm {
    smpp_broker::smpp::pdu::Sm {
        source: smpp_broker::smpp::pdu::Address::new(1, 1, "4915100000"),
        dest: smpp_broker::smpp::pdu::Address::new(1, 1, format!("4917{:08}", n % 100_000_000)),
        registered_delivery: 1,
        short_message: bytes::Bytes::from_static(
            b"A benchmark message of a typical length, about seventy characters.",
        ),
        ..Default::default()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The storage-only ceiling: the same validation and group-commit writer with the
/// same number of messages in flight (`tasks` × `per_call`), but no SMPP: each task
/// hands the store `per_call` messages at a time, so nothing but storage limits it.
async fn storage_ceiling(
    tasks: usize,
    per_call: usize,
    messages: usize,
    target: &Target,
) -> anyhow::Result<f64> {
    use smpp_broker::smpp::submit::{from_submit_sm, AccountPolicy, SubmitTime};
    use smpp_broker::store::Store;
    let dir = tempfile::tempdir()?;
    let settings = match target {
        Target::Sqlite => smpp_broker::config::StoreSettings::sqlite(dir.path().join("ceiling.db")),
        Target::Postgres(url) => smpp_broker::config::StoreSettings {
            url: Some(smpp_broker::config::Secret::new(url.clone())),
            node_id: Some("bench-ceiling".to_owned()),
            ..Default::default()
        },
    };
    let limits = smpp_broker::store::WriterLimits::of(&smpp_broker::Settings::default());
    let store = Store::open(
        &settings,
        limits,
        std::sync::Arc::new(smpp_broker::clock::SystemClock),
    )
    .await?;
    let account = AccountPolicy {
        system_id: "bench".into(),
        routes: smpp_broker::routing::AccountRoutes::only("sandbox"),
        alphabet: Default::default(),
    };
    let at = SubmitTime {
        now_ms: 1_795_359_600_000,
        default_validity_ms: 172_800_000,
    };
    let calls_per_task = messages / tasks / per_call;
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let store = store.clone();
        let account = account.clone();
        running.spawn(async move {
            for call in 0..calls_per_task {
                let first = (task * calls_per_task + call) * per_call;
                let batch = (first..first + per_call)
                    .map(|n| {
                        from_submit_sm(&bench_message(n), &account, at)
                            .map_err(|s| anyhow::anyhow!("{s}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                store.submit(batch).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    let rate = (calls_per_task * tasks * per_call) as f64 / started.elapsed().as_secs_f64();
    store.close().await?;
    Ok(rate)
}

async fn submit(
    sessions: usize,
    window: usize,
    messages: usize,
    broker: Option<PathBuf>,
    store: StoreArgs,
) -> anyhow::Result<()> {
    let target = store.target()?;
    let nodes = start_nodes(
        broker_binary(broker)?,
        sessions,
        HELD_SANDBOX,
        &target,
        store.nodes,
    )
    .await?;
    let wal = writer_time::WalWatch::start(nodes[0].dir.path().join("bench.db-wal"));
    let per_session = messages / sessions;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..sessions {
        let addr = nodes[s % nodes.len()].process.addr;
        tasks.spawn(submit_session(addr, window, per_session));
    }
    let mut latencies = Vec::with_capacity(messages);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed();
    let mut writers = Vec::new();
    for node in &nodes {
        writers.push(writer_time::line(node.process.http_addr, elapsed).await?);
    }
    let wal_peak = wal.peak().await?;
    drop(nodes);
    latencies.sort_unstable();
    let smpp_rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let ceiling = storage_ceiling(sessions, window, messages, &target).await?;
    println!(
        "durable submit_sm through SMPP ({}): {} sessions x window {window}, {} messages",
        target.describe(store.nodes),
        sessions,
        latencies.len()
    );
    println!("  throughput:            {smpp_rate:.0} submit_sm/s");
    println!(
        "  write-ahead log: at most {:.0} MiB during the run",
        wal_peak as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  submit_sm_resp latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&latencies, 1.0)
    );
    for writer in writers {
        println!("{writer}");
    }
    println!(
        "storage-only ceiling ({sessions} submitters x {window} messages per call, same writer): {ceiling:.0} messages/s"
    );
    println!("ratio SMPP / storage-only: {:.2}", smpp_rate / ceiling);
    Ok(())
}

/// Rows waiting in the broker's deliveries table.
async fn waiting_deliveries(db: &std::path::Path) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    Ok(sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&mut conn)
        .await?)
}

async fn receipts(
    receivers: usize,
    messages: usize,
    broker: Option<PathBuf>,
) -> anyhow::Result<()> {
    let broker = start_broker(broker_binary(broker)?, receivers + 1, QUICK_SANDBOX, "").await?;
    let db = broker.dir.path().join("bench.db");
    submit_session(broker.process.addr, 64, messages).await?;
    // Every receipt stored before any receiver binds: what follows is fan-out alone.
    let deadline = Instant::now() + Duration::from_secs(300);
    while waiting_deliveries(&db).await? < messages as i64 {
        if Instant::now() > deadline {
            bail!("receipts were not all stored within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(messages as i64));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..receivers {
        let remaining = std::sync::Arc::clone(&remaining);
        let addr = broker.process.addr;
        tasks.spawn(async move {
            let mut esme = bind_session(addr, BindKind::Receiver).await?;
            let mut received = 0usize;
            while remaining.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                let pdu =
                    match tokio::time::timeout(Duration::from_millis(200), next_pdu(&mut esme))
                        .await
                    {
                        Ok(pdu) => pdu?,
                        Err(_) => continue,
                    };
                let answer = match pdu.body {
                    Body::DeliverSm(_) => {
                        received += 1;
                        remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        Body::DeliverSmResp(Default::default())
                    }
                    Body::EnquireLink => Body::EnquireLinkResp,
                    _ => continue,
                };
                esme.try_send(&Pdu::new(pdu.sequence_number, answer))
                    .await?;
            }
            Ok::<_, anyhow::Error>(received)
        });
    }
    let mut per_receiver = Vec::new();
    while let Some(done) = tasks.join_next().await {
        per_receiver.push(done??);
    }
    let elapsed = started.elapsed();
    println!(
        "receipt fan-out: {messages} receipts to {receivers} receiver sessions (deliver_window 10)"
    );
    println!(
        "  {:.0} deliver_sm/s acknowledged; per session {per_receiver:?}",
        messages as f64 / elapsed.as_secs_f64()
    );
    drop(broker);
    Ok(())
}

/// An smsgate upstream nobody answers (held, inbox read hourly) and an account
/// receiving its incoming messages: all the webhook benchmark needs.
const WEBHOOK_UPSTREAM: &str = r#"
[[upstreams]]
name = "phone"
kind = "smsgate"
mode = "private"
base_url = "http://127.0.0.1:9"
username = "bench"
password = "bench"
hold = true
inbox_interval = "1h"
[[accounts]]
system_id = "mo"
password = "mo"
upstream = "phone"
"#;

async fn webhooks(clients: usize, events: usize, broker: Option<PathBuf>) -> anyhow::Result<()> {
    let broker = start_broker(broker_binary(broker)?, 1, HELD_SANDBOX, WEBHOOK_UPSTREAM).await?;
    let url = format!("http://{}/webhooks/phone", broker.process.http_addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, next) = (http.clone(), url.clone(), std::sync::Arc::clone(&next));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let body = serde_json::json!({"event": "sms:received", "deviceId": "bench",
                    "payload": {"messageId": format!("{n:08x}"), "message": "STOP",
                        "sender": format!("+4917{:08}", n), "recipient": "+4915100000",
                        "receivedAt": "2026-11-22T18:00:00.000Z"}});
                let sent = Instant::now();
                let status = http.post(&url).json(&body).send().await?.status();
                if !status.is_success() {
                    bail!("webhook {n} answered {status}");
                }
                latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
        });
    }
    let mut latencies = Vec::with_capacity(events);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed();
    let stored = waiting_deliveries(&broker.dir.path().join("bench.db")).await?;
    latencies.sort_unstable();
    println!("webhook intake: {events} sms:received from {clients} concurrent clients");
    println!(
        "  {:.0} events/s committed; {stored} incoming messages stored",
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  answer latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&latencies, 1.0)
    );
    if stored != events as i64 {
        bail!("{events} webhooks answered 200 but {stored} messages stored");
    }
    drop(broker);
    Ok(())
}
