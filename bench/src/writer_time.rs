//! The broker's own account of its single writer (`smpp_broker_store_writer_seconds`
//! and `smpp_broker_store_transactions` on /metrics), printed beside a bench's
//! figures: which step the writer's time went to, and how near saturation it was.

use std::net::SocketAddr;
use std::time::Duration;

/// One line: seconds per step over `elapsed`, and the transactions.
pub async fn line(http_addr: SocketAddr, elapsed: Duration) -> anyhow::Result<String> {
    let text = reqwest::get(format!("http://{http_addr}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut steps = Vec::new();
    let mut total = 0.0;
    let mut transactions = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("smpp_broker_store_writer_seconds_total{step=\"") {
            let Some((step, value)) = rest.split_once("\"} ") else {
                continue;
            };
            let seconds: f64 = value.trim().parse()?;
            total += seconds;
            steps.push(format!("{step} {seconds:.2} s"));
        } else if let Some(value) = line.strip_prefix("smpp_broker_store_transactions_total ") {
            transactions = value.trim().parse()?;
        }
    }
    Ok(format!(
        "  writer: busy {total:.2} s of {:.2} s ({:.0} %): {}; {transactions:.0} transactions",
        elapsed.as_secs_f64(),
        100.0 * total / elapsed.as_secs_f64(),
        steps.join(", ")
    ))
}

/// The largest size the write-ahead log `wal` reached while it was watched,
/// sampled every 100 ms.
pub struct WalWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl WalWatch {
    pub fn start(wal: std::path::PathBuf) -> WalWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        WalWatch { stop, task }
    }

    /// Stops watching; the peak in bytes.
    pub async fn peak(self) -> anyhow::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self.task.await?)
    }
}
