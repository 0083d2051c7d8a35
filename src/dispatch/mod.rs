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

use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::UpstreamSettings;
use crate::metrics::Metrics;
use crate::routing::{Route, RouteTable};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
pub use members::{Member, Members, Unavailable};
pub use poll::StatePoller;
pub use route::RouteDispatcher;
pub use upstream::{throttled, Call, Reply, SendOutcome, StatusOutcome, UpstreamService};

/// Starts a dispatcher for every route and a state poller for every upstream
/// not on hold; returns the members, whose state /readyz and metrics show.
/// Those `held` start on hold whatever their settings say (held from the
/// console before a reload).
pub async fn start(
    upstreams: &[UpstreamSettings],
    routes: &RouteTable,
    store: &Store,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    tasks: &Tasks,
    held: &[String],
) -> Result<Arc<Members>, StoreError> {
    let members = Arc::new(Members::start(upstreams, store, clock, tasks).await?);
    for name in held {
        if let Some(member) = members.get(name) {
            member.set_hold(true);
        }
    }
    for member in members.iter() {
        if member.is_held() {
            warn!(upstream = %member.name,
                "upstream on hold: it is sent nothing; its routes use their other members or wait");
        }
        let poller = StatePoller::new(Arc::clone(member), store.clone(), Arc::clone(clock));
        tasks.spawn(poller.run(tasks.stop_token()));
    }
    for route in routes.routes() {
        let held = |name: &str| members.get(name).is_some_and(|m| m.is_held());
        if route.members().all(held) {
            warn!(route = %route.name,
                "every upstream of the route is on hold: its messages wait until one is not");
        }
    }
    let mut drained: Vec<Arc<Route>> = routes.routes().to_vec();
    drained.extend(leftover_short_forms(routes, &members, store).await?);
    for route in drained {
        let dispatcher = RouteDispatcher::new(
            route,
            Arc::clone(&members),
            store.clone(),
            Arc::clone(clock),
            Arc::clone(metrics),
        );
        tasks.spawn(dispatcher.run(tasks.shutdown_token(), tasks.stop_token()));
    }
    Ok(members)
}

/// Routes that messages still wait on but the configuration no longer has.
/// One named after an upstream is the short form of an account's former
/// `upstream = "x"` (every message queued before routes is on one): it keeps
/// draining through that upstream. Any other is only warned of, once: its
/// messages are kept, not failed, until a route of that name is back.
async fn leftover_short_forms(
    routes: &RouteTable,
    members: &Members,
    store: &Store,
) -> Result<Vec<Arc<Route>>, StoreError> {
    let mut unrouted = std::collections::BTreeMap::<String, i64>::new();
    for (route, state, count) in store.open_outbox().await? {
        if state != "enroute" && routes.get(&route).is_none() {
            *unrouted.entry(route).or_default() += count;
        }
    }
    let mut short_forms = Vec::new();
    for (route, messages) in unrouted {
        if members.get(&route).is_some() {
            info!(%route, messages,
                "messages queued for an upstream no account names any more still go through it");
            short_forms.push(Arc::new(Route::short_form(&route)));
        } else {
            warn!(%route, messages,
                "messages wait on a route that is no longer configured; they are sent once a \
                 [[routes]] entry (or an account's upstream) of that name is back");
        }
    }
    Ok(short_forms)
}
