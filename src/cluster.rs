//! A node among several on one PostgreSQL database: its heartbeat, and the
//! leases under which one node at a time does a piece of work (each
//! upstream's dispatch, polls and inbox; the store's maintenance). The rows
//! and their SQL are the store's (store/postgres/cluster.rs); this task keeps
//! them fresh. On SQLite there is one process, which does everything.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Settings;
use crate::live::Live;
use crate::store::{upstream_lease, ClusterHandle, Store, MAINTENANCE_LEASE};
use crate::tasks::Tasks;

/// The leases a node of this configuration competes for.
pub fn wanted_leases(settings: &Settings) -> Vec<String> {
    std::iter::once(MAINTENANCE_LEASE.to_owned())
        .chain(settings.upstreams.iter().map(|u| upstream_lease(&u.name)))
        .collect()
}

/// Joins the cluster when the store is shared: a first heartbeat now (so that
/// the leases free at startup are taken before the dispatchers start), then
/// one every `store.heartbeat`, for the leases `wanted` names then (a reload
/// changes them); at shutdown the leases are given up.
pub async fn join(
    store: &Store,
    wanted: Arc<Live<Vec<String>>>,
    tasks: &Tasks,
) -> Option<ClusterHandle> {
    let handle = store.cluster()?;
    let mut held = Vec::new();
    beat(&handle, &wanted.load(), &mut held).await;
    let every = Duration::from_millis(handle.timing().heartbeat_ms.max(1) as u64);
    let stop = tasks.stop_token();
    let task_handle = handle.clone();
    tasks.spawn(async move {
        let handle = task_handle;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => beat(&handle, &wanted.load(), &mut held).await,
            }
        }
        match handle.leave(&wanted.load()).await {
            Ok(()) => info!(
                node_id = handle.node_id(),
                "left the cluster: leases given up"
            ),
            Err(err) => warn!(node_id = handle.node_id(), error = %err,
                "leaving the cluster failed: other nodes take the leases when they run out"),
        }
    });
    Some(handle)
}

/// One heartbeat; logs the leases taken and lost since the last.
async fn beat(handle: &ClusterHandle, wanted: &[String], held: &mut Vec<String>) {
    if let Err(err) = handle.beat(wanted).await {
        warn!(node_id = handle.node_id(), error = %err,
            "heartbeat failed: the leases it could not renew count as lost");
    }
    let now = handle.held();
    for name in now.iter().filter(|n| !held.contains(n)) {
        info!(node_id = handle.node_id(), lease = %name, "lease taken: this node does its work");
    }
    for name in held.iter().filter(|n| !now.contains(n)) {
        warn!(node_id = handle.node_id(), lease = %name, "lease lost: another node may take it");
    }
    *held = now;
}
