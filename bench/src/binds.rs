//! `smpp-bench binds`: the bind protections of a broker with a `password_hash`
//! account. COUNT parallel wrong binds, each from its own loopback address so
//! that the per-IP back-off does not spread them, report the broker's memory
//! (argon2 needs 19 MiB per verification); then sequential wrong binds compare
//! the answer time of a known and an unknown system_id. With `--from-one-ip N`,
//! N parallel wrong binds from one address show the back-off (with the default
//! failed_bind_delay, 0.5 s doubling up to 30 s), while a correct bind from
//! another address is answered at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use smpp_broker::smpp::pdu::{BindKind, CommandStatus};
use testkit::esme::Esme;
use tokio::net::TcpSocket;

use super::{broker_binary, start_broker, status_kib, HELD_SANDBOX};

/// The i-th of many loopback source addresses (127.0.1.1 onwards).
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

/// A bind from `from` with a wrong password: its status and how long the answer took.
async fn bind_from(
    addr: SocketAddr,
    from: IpAddr,
    system_id: &str,
) -> anyhow::Result<(CommandStatus, Duration)> {
    bind_with(addr, from, system_id, "wrong").await
}

async fn bind_with(
    addr: SocketAddr,
    from: IpAddr,
    system_id: &str,
    password: &str,
) -> anyhow::Result<(CommandStatus, Duration)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut esme = Esme::over(socket.connect(addr).await?);
    let started = Instant::now();
    let resp = esme
        .try_bind(BindKind::Transmitter, system_id, password)
        .await?;
    Ok((resp.command_status, started.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

pub async fn binds(
    count: usize,
    from_one_ip: usize,
    broker: Option<PathBuf>,
) -> anyhow::Result<()> {
    let hash = smpp_broker::smpp::auth::hash_password("s3cret")
        .map_err(|err| anyhow::anyhow!("hashing: {err}"))?;
    let account = format!(
        "[[accounts]]\nsystem_id = \"hashed\"\npassword_hash = \"{hash}\"\nupstream = \"sandbox\""
    );
    let connections = count.max(from_one_ip) + 10;
    let broker = start_broker(broker_binary(broker)?, connections, HELD_SANDBOX, &account).await?;
    let (addr, pid) = (broker.process.addr, broker.process.child.id());
    let idle_kib = status_kib(pid, "VmRSS")?;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        set.spawn(async move { bind_from(addr, source(i), "hashed").await });
    }
    let mut slowest = Duration::ZERO;
    while let Some(joined) = set.join_next().await {
        let (status, took) = joined??;
        if status != CommandStatus::ESME_RBINDFAIL {
            bail!("a wrong password got {status}");
        }
        slowest = slowest.max(took);
    }
    let (after_kib, peak_kib) = (status_kib(pid, "VmRSS")?, status_kib(pid, "VmHWM")?);
    println!(
        "parallel wrong binds:    {count}, all ESME_RBINDFAIL, the last after {:.0} ms",
        ms(slowest)
    );
    println!(
        "broker RSS idle:         {:.1} MiB",
        idle_kib as f64 / 1024.0
    );
    println!(
        "broker RSS peak:         {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    println!(
        "broker RSS after:        {:.1} MiB",
        after_kib as f64 / 1024.0
    );

    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..30 {
        known.push(bind_from(addr, source(count + 2 * i), "hashed").await?.1);
        unknown.push(
            bind_from(addr, source(count + 2 * i + 1), "nobody")
                .await?
                .1,
        );
    }
    println!(
        "sequential wrong binds:  known system_id median {:.1} ms, unknown median {:.1} ms",
        ms(median(known)),
        ms(median(unknown))
    );
    if from_one_ip > 0 {
        burst_from_one_ip(addr, from_one_ip).await?;
    }
    Ok(())
}

/// `count` parallel wrong binds from one address, and meanwhile a correct one
/// from another: the back-off spreads the first, never holds back the second.
async fn burst_from_one_ip(addr: SocketAddr, count: usize) -> anyhow::Result<()> {
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        set.spawn(async move { bind_from(addr, attacker, "hashed").await });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let (status, took) = bind_with(addr, other, "hashed", "s3cret").await?;
    let mut answered = Vec::new();
    while let Some(joined) = set.join_next().await {
        answered.push(joined??.1);
    }
    answered.sort();
    println!(
        "parallel wrong binds from one IP: {count}, answered after median {:.1} s, last {:.1} s",
        median(answered.clone()).as_secs_f64(),
        answered.last().map_or(0.0, Duration::as_secs_f64)
    );
    println!(
        "a correct bind from another IP meanwhile: {status} in {:.1} ms",
        ms(took)
    );
    Ok(())
}
