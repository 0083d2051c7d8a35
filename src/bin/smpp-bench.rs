//! Load generator and measurements for smpp-broker.
//!
//! `smpp-bench sessions --count 1000` starts the release broker binary (next to this
//! one) on a temporary config, binds COUNT transceiver sessions to it, checks every
//! one answers enquire_link, and prints the broker's resident memory before and
//! after, read from /proc/PID/status.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{Bind, BindKind, Body, Pdu};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        BenchCommand::Sessions { count, broker } => runtime.block_on(sessions(count, broker)),
    }
}

/// A broker child process on a temporary config, killed on drop.
struct BrokerProcess {
    child: Child,
    smpp_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

async fn start_broker(binary: PathBuf, max_sessions: usize) -> anyhow::Result<BrokerProcess> {
    let dir = tempfile::tempdir()?;
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
[store]
path = "{db}"
[log]
level = "warn,smpp_broker::app=info"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
[[accounts]]
system_id = "bench"
password = "bench"
upstream = "sandbox"
max_sessions = {max_sessions}
"#,
            db = dir.path().join("bench.db").display()
        ),
    )?;
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .arg("--log-json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("broker stderr")?;
    let mut lines = BufReader::new(tokio::process::ChildStderr::from_std(stderr)?).lines();
    // The broker logs its bound address; port 0 makes it different every run.
    let smpp_addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("SMPP listening (plain TCP)") {
                if let Some(addr) = logged_addr(&line) {
                    return Ok::<_, anyhow::Error>(addr);
                }
            }
        }
        bail!("broker exited before listening")
    })
    .await
    .context("broker did not start within 30 s")??;
    // Keep draining stderr so the broker never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(BrokerProcess {
        child,
        smpp_addr,
        _dir: dir,
    })
}

/// The `"addr":"…"` field of a JSON log line.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    line.split("\"addr\":\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS not found")
}

async fn bind_session(addr: SocketAddr) -> anyhow::Result<Framed<TcpStream, SmppCodec>> {
    let stream = TcpStream::connect(addr).await?;
    let mut framed = Framed::new(stream, SmppCodec::default());
    let bind = Bind {
        system_id: "bench".into(),
        password: "bench".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    framed
        .send(&Pdu::new(1, Body::Bind(BindKind::Transceiver, bind)))
        .await?;
    let resp = next_pdu(&mut framed).await?;
    if !resp.command_status.is_ok() {
        bail!("bind refused: {}", resp.command_status);
    }
    Ok(framed)
}

async fn next_pdu(framed: &mut Framed<TcpStream, SmppCodec>) -> anyhow::Result<Pdu> {
    match framed.next().await {
        Some(Ok(Frame::Pdu(bytes))) => Ok(Pdu::decode(&bytes)?),
        Some(Ok(Frame::InvalidLength { .. })) => bail!("invalid frame from broker"),
        Some(Err(err)) => Err(err.into()),
        None => bail!("broker closed the connection"),
    }
}

async fn sessions(count: usize, broker: Option<PathBuf>) -> anyhow::Result<()> {
    let broker = start_broker(broker_binary(broker)?, count).await?;
    let pid = broker.child.id();
    let idle_kib = rss_kib(pid)?;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        let addr = broker.smpp_addr;
        set.spawn(async move { bind_session(addr).await });
    }
    let mut sessions = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        sessions.push(joined??);
    }
    let bind_time = started.elapsed();
    // Every session must still be alive: one enquire_link each.
    for framed in &mut sessions {
        framed.send(&Pdu::new(2, Body::EnquireLink)).await?;
    }
    for framed in &mut sessions {
        let resp = next_pdu(framed).await?;
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
