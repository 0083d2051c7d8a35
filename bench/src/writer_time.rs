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
