//! `smpp-bench pipeline`: the whole way, end to end. Transceiver sessions
//! submit with registered_delivery = 1 through a sandbox that takes and
//! delivers every message at once, and answer every deliver_sm as it comes.
//! Printed: receipts a second (messages ÷ the time to the last receipt),
//! submit→receipt latency, and in the same run the intake (messages ÷ the
//! time to the last submit_sm_resp).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{BindKind, Body, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use crate::{bench_message, bind_session, broker_binary, percentile, start_nodes, StoreArgs};

/// The sandbox of the pipeline benchmark: takes and delivers at once, unthrottled.
const INSTANT_SANDBOX: &str = "sent_after = \"0s\"\ndelivered_after = \"0s\"\n\
     rate = 1000000\nmax_in_flight = 2000";

/// When each message was submitted and when its final receipt came, by
/// message_id, whichever session saw either.
#[derive(Default)]
struct Timeline {
    submitted: HashMap<String, Instant>,
    receipted: HashMap<String, Instant>,
    /// Receipts seen for a message that already had one.
    repeated: usize,
    last_response: Option<Instant>,
}

type Shared = Arc<Mutex<Timeline>>;

fn lock(timeline: &Shared) -> anyhow::Result<std::sync::MutexGuard<'_, Timeline>> {
    timeline.lock().map_err(|_| anyhow::anyhow!("poisoned"))
}

/// One transceiver: submits `count` messages with `window` outstanding, and
/// answers deliver_sm until `expected` receipts have come to all sessions.
async fn session(
    addr: std::net::SocketAddr,
    window: usize,
    count: usize,
    first: usize,
    expected: usize,
    timeline: Shared,
) -> anyhow::Result<()> {
    let bound = bind_session(addr, BindKind::Transceiver).await?;
    let (read_half, mut write_half) = bound.into_inner().into_split();
    let mut frames = tokio_util::codec::FramedRead::new(read_half, SmppCodec::default());
    let (out, mut outbox) = mpsc::unbounded_channel::<Pdu>();
    let writer = tokio::spawn(async move {
        let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
        while let Some(pdu) = outbox.recv().await {
            pdu.encode(&mut buf);
            // Whatever else is ready goes in the same write.
            while let Ok(more) = outbox.try_recv() {
                more.encode(&mut buf);
            }
            write_half.write_all(&buf).await?;
            buf.clear();
        }
        Ok::<_, anyhow::Error>(())
    });
    let permits = Arc::new(Semaphore::new(window));
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count + 2]));
    let submitter = {
        let (permits, sent_at, out) = (Arc::clone(&permits), Arc::clone(&sent_at), out.clone());
        tokio::spawn(async move {
            for seq in 1..=count {
                permits.acquire().await?.forget();
                sent_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[seq] =
                    Some(Instant::now());
                // bench_message asks for a final receipt (registered_delivery 1).
                let sm = bench_message(first + seq);
                out.send(Pdu::new(seq as u32, Body::SubmitSm(sm)))?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let mut answered = 0;
    // A receipt the broker dropped (over max_undelivered) never comes: after
    // 30 s without a frame the session stops waiting, and the run says so.
    let mut idle_ticks = 0;
    loop {
        let done = {
            let t = lock(&timeline)?;
            answered == count && t.receipted.len() >= expected
        };
        if done {
            break;
        }
        let frame = match tokio::time::timeout(Duration::from_millis(200), frames.next()).await {
            Ok(frame) => {
                idle_ticks = 0;
                frame.context("broker closed the session")??
            }
            Err(_) if idle_ticks >= 150 => break,
            Err(_) => {
                idle_ticks += 1;
                continue;
            }
        };
        let Frame::Pdu(bytes) = frame else {
            bail!("invalid frame")
        };
        let pdu = Pdu::decode(&bytes)?;
        match pdu.body {
            Body::SubmitSmResp(resp) => {
                if !pdu.command_status.is_ok() {
                    bail!("submit refused: {}", pdu.command_status);
                }
                let started = sent_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?
                    [pdu.sequence_number as usize]
                    .context("response to an unsent submit")?;
                let mut t = lock(&timeline)?;
                t.submitted.insert(resp.message_id, started);
                t.last_response = Some(Instant::now());
                answered += 1;
                permits.add_permits(1);
            }
            Body::DeliverSm(sm) => {
                let id = sm
                    .tlvs
                    .get_cstring(tag::RECEIPTED_MESSAGE_ID)
                    .context("a deliver_sm without receipted_message_id")?;
                let at = Instant::now();
                {
                    let mut t = lock(&timeline)?;
                    if t.receipted.insert(id, at).is_some() {
                        t.repeated += 1;
                    }
                }
                out.send(Pdu::new(
                    pdu.sequence_number,
                    Body::DeliverSmResp(Default::default()),
                ))?;
            }
            Body::EnquireLink => out.send(Pdu::new(pdu.sequence_number, Body::EnquireLinkResp))?,
            _ => {}
        }
    }
    submitter.await??;
    drop(out);
    writer.await??;
    Ok(())
}

pub async fn pipeline(
    sessions: usize,
    window: usize,
    messages: usize,
    broker: Option<PathBuf>,
    store: StoreArgs,
) -> anyhow::Result<()> {
    if sessions == 0 || messages < sessions {
        bail!("--sessions must be at least 1 and at most --messages");
    }
    let target = store.target()?;
    let nodes = start_nodes(
        broker_binary(broker)?,
        sessions,
        INSTANT_SANDBOX,
        &target,
        store.nodes,
    )
    .await?;
    let wal = crate::writer_time::WalWatch::start(nodes[0].dir.path().join("bench.db-wal"));
    let per_session = messages / sessions;
    let expected = per_session * sessions;
    let timeline: Shared = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..sessions {
        tasks.spawn(session(
            nodes[s % nodes.len()].process.addr,
            window,
            per_session,
            s * per_session,
            expected,
            Arc::clone(&timeline),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let mut writers = Vec::new();
    for node in &nodes {
        writers.push(crate::writer_time::line(node.process.http_addr, started.elapsed()).await?);
    }
    let wal_peak = wal.peak().await?;
    drop(nodes);
    let t = lock(&timeline)?;
    let last_receipt = t.receipted.values().max().copied().context("no receipt")?;
    let last_response = t.last_response.context("no submit_sm_resp")?;
    let mut latencies: Vec<u32> = t
        .submitted
        .iter()
        .filter_map(|(id, at)| Some(t.receipted.get(id)?.duration_since(*at)))
        .map(|d| d.as_micros().min(u32::MAX as u128) as u32)
        .collect();
    latencies.sort_unstable();
    let unmatched = t.submitted.len() - latencies.len();
    println!(
        "pipeline ({}): {sessions} transceivers x window {window}, {expected} messages with \
         registered_delivery=1, instant sandbox",
        target.describe(store.nodes)
    );
    println!(
        "  receipts:  {:.0}/s ({expected} in {:.2} s); {} repeated, {unmatched} missing",
        expected as f64 / last_receipt.duration_since(started).as_secs_f64(),
        last_receipt.duration_since(started).as_secs_f64(),
        t.repeated
    );
    println!(
        "  submit->receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  intake in the same run: {:.0} submit_sm/s",
        expected as f64 / last_response.duration_since(started).as_secs_f64()
    );
    for writer in writers {
        println!("{writer}");
    }
    println!(
        "  write-ahead log: at most {:.0} MiB during the run",
        wal_peak as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
