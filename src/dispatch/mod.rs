//! Dispatchers drain the outbox to the upstreams: one per route, each choosing
//! for every message the member that carries it when it is sent (`route`),
//! over the members every route shares (`members`: each upstream's throttle,
//! pause, cool-down and carrier limits), and one poller per upstream for the
//! states no report brought (`poll`).

pub mod members;
pub mod pace;
pub mod policy;
pub mod poll;
pub mod route;
pub mod sandbox;
pub mod smsgate;
pub mod upstream;

use std::sync::Arc;

use tracing::warn;

use crate::clock::Clock;
use crate::config::UpstreamSettings;
use crate::metrics::Metrics;
use crate::routing::RouteTable;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
pub use members::{Member, Members, Unavailable};
pub use poll::StatePoller;
pub use route::RouteDispatcher;
pub use upstream::{throttled, Call, Reply, SendOutcome, StatusOutcome, UpstreamService};

/// Starts a dispatcher for every route and a state poller for every upstream
/// not on hold; returns the members, whose state /readyz and metrics show.
pub async fn start(
    upstreams: &[UpstreamSettings],
    routes: &RouteTable,
    store: &Store,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    tasks: &Tasks,
) -> Result<Arc<Members>, StoreError> {
    let members = Arc::new(Members::start(upstreams, store, clock, tasks).await?);
    for member in members.iter() {
        if member.hold {
            warn!(upstream = %member.name,
                "upstream on hold: it is sent nothing; its routes use their other members or wait");
            continue;
        }
        let poller = StatePoller::new(Arc::clone(member), store.clone(), Arc::clone(clock));
        tasks.spawn(poller.run(tasks.stop_token()));
    }
    for route in routes.routes() {
        let dispatcher = RouteDispatcher::new(
            Arc::clone(route),
            Arc::clone(&members),
            store.clone(),
            Arc::clone(clock),
            Arc::clone(metrics),
        );
        tasks.spawn(dispatcher.run(tasks.stop_token()));
    }
    Ok(members)
}
