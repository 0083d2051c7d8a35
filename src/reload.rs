//! Reading the configuration again while the broker runs (SIGHUP, `POST
//! /api/reload`). Accounts, upstreams and routes take effect; the ports, the
//! store and the logs need a restart, which the answer names.
//!
//! What a reload does, in this order, so that a failure leaves the broker as
//! it was: the file is read and validated (an invalid one changes nothing);
//! the writer takes the new limits; the accounts are swapped, and the
//! sessions of accounts removed or whose bind terms changed are unbound (the
//! others stay bound); when upstreams, routes or the accounts' routing
//! changed, the dispatch generation (members, dispatchers, pollers, webhook
//! registration) is drained and started again from the new settings.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{ConfigError, Settings, UpstreamKind};
use crate::dispatch::smsgate::inbox::InboxPoller;
use crate::dispatch::smsgate::register::register_webhooks;
use crate::dispatch::smsgate::webhook::Webhooks;
use crate::dispatch::{self, Members};
use crate::http::Configured;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::routing::{IncomingRoutes, RouteTable};
use crate::smpp::handler::OutboxService;
use crate::smpp::session::SessionContext;
use crate::smpp::submit::AccountPolicy;
use crate::store::{Store, StoreError, WriterLimits};
use crate::tasks::Tasks;

/// Where the running configuration came from, to be read again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// `--config FILE`, with the environment's overrides.
    File(PathBuf),
    /// The built-in config/default.toml, with the environment's overrides.
    Embedded,
    /// Settings made in code (tests): there is nothing to read again.
    Given,
}

impl ConfigSource {
    fn load(&self) -> Result<Settings, ReloadError> {
        match self {
            ConfigSource::File(path) => Ok(Settings::load(Some(path))?),
            ConfigSource::Embedded => Ok(Settings::load(None)?),
            ConfigSource::Given => Err(ReloadError::NoSource),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is unreadable or invalid: nothing was changed.
    #[error("{0}; nothing was changed")]
    Config(#[from] ConfigError),
    #[error("the broker was started from settings given in code, not from a file")]
    NoSource,
    /// The writer could not take the new limits: nothing was changed.
    #[error("store: {0}; nothing was changed")]
    Store(#[from] StoreError),
}

/// What a reload changed, as it is logged and `POST /api/reload` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub accounts_added: Vec<String>,
    pub accounts_removed: Vec<String>,
    pub accounts_changed: Vec<String>,
    /// Sessions told to unbind: those of accounts removed or whose password,
    /// bind types, max_sessions, throughput or long_incoming changed.
    pub sessions_unbound: usize,
    /// Upstreams, routes or the accounts' routing changed: the dispatchers
    /// finished what they had in flight and started again.
    pub dispatch_restarted: bool,
    /// Sections that changed but take effect only at the next start.
    pub restart_needed: Vec<String>,
}

/// The last reload, as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// Unix ms.
    pub at_ms: i64,
    /// Who asked: `SIGHUP`, or `console (operator)`.
    pub by: String,
    /// What changed, when it was applied.
    pub changes: Option<ReloadReport>,
    /// Why it was refused, when it was.
    pub error: Option<String>,
}

/// What a reload changes beside the settings: the parts built from them.
pub struct Reloader {
    source: ConfigSource,
    last: std::sync::Mutex<Option<LastReload>>,
    running: Mutex<Generation>,
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    tasks: Tasks,
    sessions: Arc<SessionContext>,
    messages: Arc<OutboxService>,
    configured: Arc<Live<Configured>>,
    leases: Arc<Live<Vec<String>>>,
}

/// The settings in effect and the tasks built from their upstreams and routes.
struct Generation {
    settings: Settings,
    tasks: Tasks,
}

/// The parts a reloader replaces, made by `app` at startup.
pub struct Parts {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub tasks: Tasks,
    pub sessions: Arc<SessionContext>,
    pub messages: Arc<OutboxService>,
    /// The cluster's wanted leases (cluster::join reads them each heartbeat).
    pub leases: Arc<Live<Vec<String>>>,
}

/// The account policies the message service follows for `settings`.
pub fn account_policies(settings: &Settings) -> Vec<AccountPolicy> {
    let routes = RouteTable::new(&settings.accounts, &settings.routes);
    settings
        .accounts
        .iter()
        .map(|a| AccountPolicy {
            system_id: a.system_id.clone(),
            routes: routes.for_account(&a.system_id),
            alphabet: a.default_alphabet,
        })
        .collect()
}

impl Reloader {
    /// Starts the first dispatch generation from `settings`.
    pub async fn start(
        source: ConfigSource,
        settings: Settings,
        parts: Parts,
    ) -> Result<Reloader, StoreError> {
        let tasks = parts.tasks.generation();
        let configured = start_dispatch(&settings, &parts, &tasks, &[]).await?;
        Ok(Reloader {
            source,
            last: std::sync::Mutex::default(),
            running: Mutex::new(Generation { settings, tasks }),
            store: parts.store,
            clock: parts.clock,
            metrics: parts.metrics,
            tasks: parts.tasks,
            sessions: parts.sessions,
            messages: parts.messages,
            configured: Arc::new(Live::new(configured)),
            leases: parts.leases,
        })
    }

    /// What the HTTP port and the console read, swapped by each reload.
    pub fn configured(&self) -> &Arc<Live<Configured>> {
        &self.configured
    }

    /// Reads the configuration again and applies it; `by` says who asked (in
    /// the log). One reload at a time.
    pub async fn reload(&self, by: &str) -> Result<ReloadReport, ReloadError> {
        let result = self.reload_from_source().await;
        match &result {
            Ok(report) => {
                info!(by, added = ?report.accounts_added, removed = ?report.accounts_removed,
                changed = ?report.accounts_changed, sessions_unbound = report.sessions_unbound,
                dispatch_restarted = report.dispatch_restarted, restart_needed = ?report.restart_needed,
                "configuration reloaded")
            }
            Err(err) => warn!(by, error = %err, "configuration reload refused"),
        }
        let last = LastReload {
            at_ms: self.clock.now_ms(),
            by: by.to_owned(),
            changes: result.as_ref().ok().cloned(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
        result
    }

    /// The last reload since startup, if any.
    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        let read = self.source.load()?;
        let mut running = self.running.lock().await;
        let (next, restart_needed) = keep_restart_sections(&running.settings, read);
        self.store.reconfigure(WriterLimits::of(&next)).await?;

        let old = &running.settings;
        let mut report = ReloadReport {
            restart_needed,
            ..ReloadReport::default()
        };
        for account in &next.accounts {
            match old.account(&account.system_id) {
                None => report.accounts_added.push(account.system_id.clone()),
                Some(before) if before != account => {
                    report.accounts_changed.push(account.system_id.clone())
                }
                Some(_) => {}
            }
        }
        report.accounts_removed = old
            .accounts
            .iter()
            .filter(|a| next.account(&a.system_id).is_none())
            .map(|a| a.system_id.clone())
            .collect();

        let rebind = self.sessions.accounts.update(&next.accounts);
        self.messages.set_policies(account_policies(&next));
        report.sessions_unbound = rebind
            .iter()
            .map(|system_id| self.sessions.registry.disconnect_account(system_id))
            .sum();

        if dispatch_inputs(old) != dispatch_inputs(&next) {
            report.dispatch_restarted = true;
            let held = self.held_from_console(old);
            running.tasks.stop_and_wait().await;
            let tasks = self.tasks.generation();
            let configured = match start_dispatch(&next, &self.parts(), &tasks, &held).await {
                Ok(configured) => configured,
                Err(err) => {
                    // The store failed between the writer's commit and now:
                    // the old upstreams and routes go on rather than none.
                    warn!(error = %err, "starting the reloaded dispatchers failed; the previous upstreams and routes run again");
                    let tasks = self.tasks.generation();
                    let configured = start_dispatch(old, &self.parts(), &tasks, &held).await?;
                    self.configured.store(configured);
                    running.tasks = tasks;
                    return Err(err.into());
                }
            };
            self.configured.store(configured);
            self.leases.store(crate::cluster::wanted_leases(&next));
            running.tasks = tasks;
        } else {
            let current = self.configured.load();
            self.configured.store(Configured {
                members: Arc::clone(&current.members),
                webhooks: current.webhooks.clone(),
                accounts: next.accounts.iter().map(|a| a.system_id.clone()).collect(),
                routes: current.routes.clone(),
            });
        }
        running.settings = next;
        Ok(report)
    }

    /// Upstreams put on hold from the console (not by their settings): a
    /// reload keeps them on hold; `hold` in the file is what releases them.
    fn held_from_console(&self, settings: &Settings) -> Vec<String> {
        let configured_hold =
            |name: &str| settings.upstreams.iter().any(|u| u.name == name && u.hold);
        self.configured
            .load()
            .members
            .iter()
            .filter(|m| m.is_held() && !configured_hold(&m.name))
            .map(|m| m.name.clone())
            .collect()
    }

    fn parts(&self) -> Parts {
        Parts {
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            metrics: Arc::clone(&self.metrics),
            tasks: self.tasks.clone(),
            sessions: Arc::clone(&self.sessions),
            messages: Arc::clone(&self.messages),
            leases: Arc::clone(&self.leases),
        }
    }
}

/// The settings a reload applies: `read`, with the sections only a restart
/// changes kept as they run; and the names of those that differ.
fn keep_restart_sections(running: &Settings, mut read: Settings) -> (Settings, Vec<String>) {
    let mut differ = Vec::new();
    macro_rules! keep {
        ($($section:ident),*) => {$(
            if read.$section != running.$section {
                differ.push(stringify!($section).to_owned());
                read.$section = running.$section.clone();
            }
        )*};
    }
    keep!(smpp, http, admin, store, log);
    if read.messages.default_validity != running.messages.default_validity {
        differ.push("messages.default_validity".to_owned());
        read.messages.default_validity = running.messages.default_validity;
    }
    (read, differ)
}

/// What the dispatch generation is built from: the upstreams, the routes, and
/// each account's default route and numbers for incoming messages.
fn dispatch_inputs(settings: &Settings) -> impl PartialEq + '_ {
    let routing: Vec<_> = settings
        .accounts
        .iter()
        .map(|a| (&a.system_id, &a.upstream, &a.receive_numbers))
        .collect();
    (&settings.upstreams, &settings.routes, routing)
}

/// For each upstream: its webhooks registered or its inbox poller started;
/// then a dispatcher for every route and a state poller for every upstream,
/// all on `tasks`. Returns what the HTTP port and console read of them.
async fn start_dispatch(
    settings: &Settings,
    parts: &Parts,
    tasks: &Tasks,
    held: &[String],
) -> Result<Configured, StoreError> {
    let routes = RouteTable::new(&settings.accounts, &settings.routes);
    let incoming_routes = Arc::new(IncomingRoutes::new(&settings.accounts, &settings.routes));
    for upstream in settings
        .upstreams
        .iter()
        .filter(|u| u.kind == UpstreamKind::Smsgate)
    {
        match &settings.http.public_url {
            Some(url) => register_webhooks(upstream, url.clone(), parts.store.clone(), tasks),
            None => {
                info!(upstream = %upstream.name,
                    "http.public_url not set: no webhooks registered; states come by polling");
                let poller = InboxPoller::new(
                    upstream,
                    parts.store.clone(),
                    Arc::clone(&incoming_routes),
                    Arc::clone(&parts.clock),
                );
                tasks.spawn(poller.run(tasks.stop_token()));
            }
        }
    }
    let members: Arc<Members> = dispatch::start(
        &settings.upstreams,
        &routes,
        &parts.store,
        &parts.clock,
        &parts.metrics,
        tasks,
        held,
    )
    .await?;
    let smsgates = || {
        settings
            .upstreams
            .iter()
            .filter(|u| u.kind == UpstreamKind::Smsgate)
    };
    Ok(Configured {
        members,
        webhooks: Webhooks {
            store: parts.store.clone(),
            keys: Arc::new(
                smsgates()
                    .map(|u| (u.name.clone(), u.signing_key.clone()))
                    .collect(),
            ),
            sims: Arc::new(
                settings
                    .upstreams
                    .iter()
                    .filter_map(|u| Some((u.name.clone(), u.sim_number?)))
                    .collect(),
            ),
            routes: incoming_routes,
        },
        accounts: settings
            .accounts
            .iter()
            .map(|a| a.system_id.clone())
            .collect(),
        routes: routes.routes().iter().map(|r| r.name.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_toml(toml, "test", std::iter::empty()).unwrap()
    }

    const BASE: &str = "[[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n\
        [[accounts]]\nsystem_id = \"a\"\npassword = \"pw\"\nupstream = \"sandbox\"\n";

    #[test]
    fn sections_only_a_restart_changes_are_kept_and_named() {
        let running = settings(BASE);
        let read = settings(&format!(
            "[smpp]\nbind = \"0.0.0.0:3775\"\n[messages]\ndefault_validity = \"1h\"\n\
             final_retention = \"30d\"\n{BASE}"
        ));
        let (next, differ) = keep_restart_sections(&running, read);
        assert_eq!(differ, ["smpp", "messages.default_validity"]);
        assert_eq!(next.smpp, running.smpp);
        assert_eq!(
            next.messages.default_validity,
            running.messages.default_validity
        );
        assert_ne!(
            next.messages.final_retention, running.messages.final_retention,
            "the writer's retention is reloaded"
        );
    }

    #[test]
    fn dispatch_restarts_for_routing_not_for_passwords() {
        let running = settings(BASE);
        let password = settings(&BASE.replace("\"pw\"", "\"pw2\""));
        assert!(dispatch_inputs(&running) == dispatch_inputs(&password));
        let numbers = settings(&format!("{BASE}receive_numbers = [\"+4911\"]\n"));
        assert!(dispatch_inputs(&running) != dispatch_inputs(&numbers));
        let upstream = settings(&format!(
            "{BASE}[[upstreams]]\nname = \"b\"\nkind = \"sandbox\"\n"
        ));
        assert!(dispatch_inputs(&running) != dispatch_inputs(&upstream));
    }
}
