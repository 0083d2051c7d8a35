//! `smpp-bench dispatch`: how fast the outbox drains to the upstreams, apart
//! from accepting. The broker first takes MESSAGES with its upstreams on hold;
//! it is then started again, on the same database, with them sending, and the
//! clock runs until no message waits. The upstreams are sandboxes that take
//! every message at once and report nothing within the run, so the figure is
//! the dispatcher's: claim, choose a member, bind, send, store the answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use testkit::process::Launch;

use crate::{broker_binary, submit_session};

/// The bench's configuration: `upstreams` sandboxes behind one route (the
/// account's `upstream` when there is one, which builds before routes
/// understand too), on hold or not.
fn config(dir: &Path, upstreams: usize, hold: bool) -> String {
    let mut text = format!(
        "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n[log]\nlevel = \"warn,smpp_broker::app=info\"\n",
        dir.join("bench.db").display()
    );
    let names: Vec<String> = (1..=upstreams).map(|i| format!("sandbox{i}")).collect();
    for name in &names {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"{name}\"\nkind = \"sandbox\"\nhold = {hold}\n\
             rate = 1000000\nmax_in_flight = 512\nsent_after = \"1h\"\ndelivered_after = \"2h\"\n"
        ));
    }
    text.push_str(
        "[[accounts]]\nsystem_id = \"bench\"\npassword = \"bench\"\nmax_sessions = 8\n\
         throughput = 10000000\nmax_queued = 100000000\n",
    );
    if upstreams == 1 {
        text.push_str("upstream = \"sandbox1\"\n");
    } else {
        let pool: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        text.push_str(&format!(
            "[[routes]]\nname = \"all\"\nupstreams = [{}]\n",
            pool.join(", ")
        ));
    }
    text
}

/// Outbox rows not yet handed to an upstream.
async fn waiting(db: &Path) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending', 'retry')",
    )
    .fetch_one(&mut conn)
    .await?)
}

pub async fn dispatch(
    messages: usize,
    upstreams: usize,
    broker: Option<PathBuf>,
) -> anyhow::Result<()> {
    if upstreams == 0 {
        bail!("--upstreams must be at least 1");
    }
    let binary = broker_binary(broker)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.toml");
    let db = dir.path().join("bench.db");

    std::fs::write(&path, config(dir.path(), upstreams, true))?;
    let held = Launch::new(&binary, &path)
        .startup_limit(Duration::from_secs(30))
        .start()?;
    let sessions = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        tasks.spawn(submit_session(held.addr, 64, messages / sessions));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    drop(held);
    let queued = waiting(&db).await?;

    std::fs::write(&path, config(dir.path(), upstreams, false))?;
    let started = Instant::now();
    let sending = Launch::new(&binary, &path)
        .startup_limit(Duration::from_secs(30))
        .start()?;
    let up = started.elapsed();
    let wal = crate::writer_time::WalWatch::start(dir.path().join("bench.db-wal"));
    let deadline = started + Duration::from_secs(600);
    while waiting(&db).await? > 0 {
        if Instant::now() > deadline {
            bail!("the outbox did not drain within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let writer = crate::writer_time::line(sending.http_addr, elapsed).await?;
    let wal_peak = wal.peak().await?;
    drop(sending);
    println!(
        "outbox drain: {queued} queued messages to {upstreams} sandbox upstream(s) \
         (rate unlimited, max_in_flight 512, no reports during the run)"
    );
    println!(
        "  {:.0} messages/s handed over ({:.2} s, of which {:.2} s broker startup)",
        queued as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        up.as_secs_f64()
    );
    println!("{writer}");
    println!(
        "  write-ahead log: at most {:.0} MiB while draining",
        wal_peak as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
