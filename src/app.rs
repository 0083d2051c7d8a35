//! Wiring: builds the broker from its settings, binds the listeners (port 0 works,
//! for tests), runs until told to stop, and drains on the way out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::config::UpstreamKind;
use crate::console::{self, ConsoleState, Credentials};
use crate::dispatch::smsgate::inbox::InboxPoller;
use crate::dispatch::smsgate::register::register_webhooks;
use crate::dispatch::smsgate::webhook::Webhooks;
use crate::dispatch::{self, Members};
use crate::fd_limit;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::routing::{IncomingRoutes, RouteTable};
use crate::smpp::auth::Accounts;
use crate::smpp::delivery::DeliveryHub;
use crate::smpp::handler::OutboxService;
use crate::smpp::listener::{accept_loop, Transport};
use crate::smpp::registry::{Registry, SharedSessions};
use crate::smpp::service::MessageService;
use crate::smpp::session::SessionContext;
use crate::smpp::submit::AccountPolicy;
use crate::smpp::tls::{self, TlsError};
use crate::store::{Store, StoreError, UpstreamLimits, WriterLimits};
use crate::tasks::Tasks;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A running broker.
pub struct Broker {
    smpp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: SocketAddr,
    tasks: Tasks,
    ctx: Arc<SessionContext>,
    members: Arc<Members>,
    http_addr: SocketAddr,
    store: Store,
}

impl Broker {
    pub async fn start(settings: Settings) -> Result<Broker, StartError> {
        Broker::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Starts with an injected wall clock (tests control message times with it).
    /// Everything that can fail (the database, the certificate, the ports) comes
    /// before anything is spawned; every task goes on the tracker that
    /// [`Broker::shutdown`] drains.
    pub async fn start_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, StartError> {
        let accounts = Accounts::from_settings(&settings.accounts);
        warn_about_plain_passwords(&accounts);
        let store = open_store(&settings, &clock).await?;
        let listeners = Listeners::bind(&settings).await?;
        let running = Running {
            store,
            clock,
            metrics: Arc::new(Metrics::default()),
            tasks: Tasks::default(),
        };
        crate::cluster::join(&running.store, &settings, &running.tasks).await;
        let routes = RouteTable::new(&settings.accounts, &settings.routes);
        let ctx = running.start_sessions(&settings, &routes, accounts);
        let addrs = listeners.addrs();
        let caps = fd_limit::caps_for(&settings);
        running.serve_smpp(listeners.smpp, listeners.tls, &ctx, caps.smpp);
        let incoming_routes = Arc::new(IncomingRoutes::new(&settings.accounts, &settings.routes));
        let members = running
            .start_upstreams(&settings, &routes, &incoming_routes)
            .await?;
        let account_names: Arc<Vec<String>> = Arc::new(
            settings
                .accounts
                .iter()
                .map(|a| a.system_id.clone())
                .collect(),
        );
        let state = HttpState {
            store: running.store.clone(),
            members: Arc::clone(&members),
            metrics: Arc::clone(&running.metrics),
            clock: Arc::clone(&running.clock),
            webhooks: Webhooks {
                store: running.store.clone(),
                keys: Arc::new(
                    settings
                        .upstreams
                        .iter()
                        .filter(|u| u.kind == UpstreamKind::Smsgate)
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
            registry: Arc::clone(&ctx.registry),
            accounts: Arc::clone(&account_names),
            routes: Arc::new(routes.routes().iter().map(|r| r.name.clone()).collect()),
            body_limits: http::BodyLimits {
                max_size: settings.http.max_body_size,
                read_timeout: settings.http.body_read_timeout,
            },
        };
        running.serve_http(&settings, listeners.http, caps.http, state);
        let console = ConsoleState {
            store: running.store.clone(),
            members: Arc::clone(&members),
            registry: Arc::clone(&ctx.registry),
            accounts: Arc::clone(&account_names),
            clock: Arc::clone(&running.clock),
            started: std::time::Instant::now(),
            store_description: Store::describe(&settings.store),
            csrf_token: ConsoleState::new_csrf_token(),
            activity: Arc::clone(&ctx.activity),
        };
        running.serve_console(&settings, listeners.admin, console);
        Ok(Broker {
            smpp_addr: addrs.smpp,
            http_addr: addrs.http,
            tls_addr: addrs.tls,
            admin_addr: addrs.admin,
            tasks: running.tasks,
            ctx,
            store: running.store,
            members,
        })
    }

    pub fn smpp_addr(&self) -> SocketAddr {
        self.smpp_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The operator console's address (`admin.bind`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.ctx.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Which upstreams are paused, and why.
    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// A token that stops the broker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.stop_token()
    }

    /// Runs until `signal` completes or the shutdown token is cancelled, then drains.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        let stop = self.tasks.stop_token();
        tokio::select! {
            _ = signal => info!("shutdown requested"),
            _ = stop.cancelled() => {}
        }
        self.shutdown().await;
    }

    /// Stops accepting, unbinds bound sessions after their in-flight requests are
    /// answered, and waits for them up to the shutdown timeout.
    pub async fn shutdown(self) {
        self.tasks.stop_token().cancel();
        let tracker = self.tasks.tracker();
        tracker.close();
        let limit = self.ctx.settings.shutdown_timeout + self.ctx.settings.response_timeout;
        if tokio::time::timeout(limit, tracker.wait()).await.is_err() {
            warn!(
                tasks = tracker.len(),
                "shutdown timeout: closing the remaining sessions and tasks"
            );
        }
        // The WAL into the database file, so that a copy of the file alone holds
        // everything; this also lets go of the database's lock.
        if let Err(err) = self.store.close().await {
            warn!(error = %err, "closing the database");
        }
        info!("stopped");
    }
}

fn warn_about_plain_passwords(accounts: &Accounts) {
    for system_id in accounts.with_plain_passwords() {
        warn!(
            system_id,
            "account uses a plain-text password: fine for development, use password_hash (smpp-broker hash-password) in production"
        );
    }
}

async fn open_store(settings: &Settings, clock: &Arc<dyn Clock>) -> Result<Store, StartError> {
    let store = Store::open(&settings.store, writer_limits(settings), Arc::clone(clock)).await?;
    info!(database = %Store::describe(&settings.store), "store open");
    Ok(store)
}

/// A bound listener and the address it got (port 0 becomes a real port).
struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    async fn to(key: &'static str, addr: SocketAddr) -> Result<Bound, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { key, addr, source })?;
        let addr =
            listener
                .local_addr()
                .map_err(|source| StartError::Listen { key, addr, source })?;
        Ok(Bound { listener, addr })
    }
}

/// Every port the broker serves, bound before anything runs, so that a port in
/// use or a bad certificate stops startup with the key named.
struct Listeners {
    smpp: Bound,
    tls: Option<(TlsAcceptor, Bound)>,
    http: Bound,
    admin: Bound,
}

struct Addresses {
    smpp: SocketAddr,
    tls: Option<SocketAddr>,
    http: SocketAddr,
    admin: SocketAddr,
}

impl Listeners {
    async fn bind(settings: &Settings) -> Result<Listeners, StartError> {
        let tls = match &settings.smpp.tls {
            Some(t) => {
                if t.generate && tls::ensure_self_signed(&t.cert, &t.key)? {
                    warn!(cert = %t.cert.display(), key = %t.key.display(),
                        "smpp.tls: no certificate, so a self-signed one was written; \
                         use a CA-signed certificate in production");
                }
                let acceptor = tls::acceptor(&t.cert, &t.key)?;
                Some((acceptor, Bound::to("smpp.tls.bind", t.bind).await?))
            }
            None => None,
        };
        Ok(Listeners {
            smpp: Bound::to("smpp.bind", settings.smpp.bind).await?,
            tls,
            http: Bound::to("http.bind", settings.http.bind).await?,
            admin: Bound::to("admin.bind", settings.admin.bind).await?,
        })
    }

    fn addrs(&self) -> Addresses {
        Addresses {
            smpp: self.smpp.addr,
            tls: self.tls.as_ref().map(|(_, bound)| bound.addr),
            http: self.http.addr,
            admin: self.admin.addr,
        }
    }
}

/// What every running part shares: the store, the clock, the metrics, and the
/// token and tracker by which shutdown stops them and waits for them.
struct Running {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    tasks: Tasks,
}

impl Running {
    /// The sessions' shared context: accounts, the message service over the
    /// store, and the hub that hands receipts and incoming messages to receivers.
    fn start_sessions(
        &self,
        settings: &Settings,
        routes: &RouteTable,
        accounts: Accounts,
    ) -> Arc<SessionContext> {
        let policies = settings.accounts.iter().map(|a| AccountPolicy {
            system_id: a.system_id.clone(),
            routes: routes.for_account(&a.system_id),
            alphabet: a.default_alphabet,
        });
        let messages = OutboxService::new(
            self.store.clone(),
            policies,
            Arc::clone(&self.clock),
            settings.messages.default_validity.as_millis() as i64,
        );
        messages.log_refusals(self.tasks.tracker(), self.tasks.stop_token());
        let deliveries = DeliveryHub::start(
            self.store.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.metrics),
            self.tasks.stop_token(),
            self.tasks.tracker(),
        );
        SessionContext::new(
            settings.smpp.clone(),
            accounts,
            Arc::new(messages) as Arc<dyn MessageService>,
            self.tasks.stop_token(),
            Some(deliveries),
            Arc::clone(&self.metrics),
            self.store
                .cluster()
                .map(|cluster| SharedSessions::start(cluster, &self.tasks)),
        )
    }

    /// One accept loop per SMPP port; plain and TLS share the connection cap.
    fn serve_smpp(
        &self,
        plain: Bound,
        tls: Option<(TlsAcceptor, Bound)>,
        ctx: &Arc<SessionContext>,
        max_connections: usize,
    ) {
        let connections = Arc::new(Semaphore::new(max_connections));
        info!(addr = %plain.addr, "SMPP listening (plain TCP)");
        self.tasks.spawn(accept_loop(
            plain.listener,
            Transport::Plain,
            Arc::clone(ctx),
            Arc::clone(&connections),
            self.tasks.tracker().clone(),
        ));
        if let Some((acceptor, bound)) = tls {
            info!(addr = %bound.addr, "SMPP listening (TLS)");
            self.tasks.spawn(accept_loop(
                bound.listener,
                Transport::Tls(acceptor),
                Arc::clone(ctx),
                connections,
                self.tasks.tracker().clone(),
            ));
        }
    }

    /// For each upstream: its webhooks registered or its inbox poller started;
    /// then a dispatcher for every route and a state poller for every upstream.
    async fn start_upstreams(
        &self,
        settings: &Settings,
        routes: &RouteTable,
        incoming_routes: &Arc<IncomingRoutes>,
    ) -> Result<Arc<Members>, StoreError> {
        for upstream in settings
            .upstreams
            .iter()
            .filter(|u| u.kind == UpstreamKind::Smsgate)
        {
            match &settings.http.public_url {
                Some(url) => {
                    register_webhooks(upstream, url.clone(), self.store.clone(), &self.tasks)
                }
                None => {
                    info!(upstream = %upstream.name,
                        "http.public_url not set: no webhooks registered; states come by polling");
                    let poller = InboxPoller::new(
                        upstream,
                        self.store.clone(),
                        Arc::clone(incoming_routes),
                        Arc::clone(&self.clock),
                    );
                    self.tasks.spawn(poller.run(self.tasks.stop_token()));
                }
            }
        }
        dispatch::start(
            &settings.upstreams,
            routes,
            &self.store,
            &self.clock,
            &self.metrics,
            &self.tasks,
        )
        .await
    }

    /// The operator console on its own port, with the HTTP port's timeouts.
    fn serve_console(&self, settings: &Settings, bound: Bound, state: ConsoleState) {
        let credentials = settings
            .admin
            .credentials()
            .map(|(username, hash)| Arc::new(Credentials::new(username, hash)));
        info!(addr = %bound.addr, login = credentials.is_some(), "Console listening");
        let limits = http::ServeLimits {
            max_connections: fd_limit::CONSOLE_CONNECTIONS as usize,
            timeouts: http::ConnectionTimeouts {
                header_read: settings.http.header_read_timeout,
                idle: settings.http.idle_timeout,
            },
        };
        self.tasks.spawn(http::serve(
            bound.listener,
            console::router(state, credentials),
            limits,
            self.tasks.stop_token(),
            self.tasks.tracker().clone(),
        ));
    }

    /// Health, readiness, metrics and webhooks, with the port's own limits.
    fn serve_http(
        &self,
        settings: &Settings,
        bound: Bound,
        max_connections: usize,
        state: HttpState,
    ) {
        info!(addr = %bound.addr, "HTTP listening (health, readiness, metrics)");
        let limits = http::ServeLimits {
            max_connections,
            timeouts: http::ConnectionTimeouts {
                header_read: settings.http.header_read_timeout,
                idle: settings.http.idle_timeout,
            },
        };
        self.tasks.spawn(http::serve(
            bound.listener,
            http::router(state),
            limits,
            self.tasks.stop_token(),
            self.tasks.tracker().clone(),
        ));
    }
}

/// The limits the store's writer enforces, from the configuration.
pub fn writer_limits(settings: &Settings) -> WriterLimits {
    let per_account = |limit: fn(&crate::config::AccountSettings) -> usize| {
        settings
            .accounts
            .iter()
            .map(|a| (a.system_id.clone(), limit(a)))
            .collect()
    };
    WriterLimits {
        wal_limit: crate::store::sqlite::WAL_LIMIT,
        max_waiting: per_account(|a| a.max_queued),
        assembly_timeout: settings.messages.assembly_timeout,
        max_undelivered: per_account(|a| a.max_undelivered),
        default_max_undelivered: crate::config::DEFAULT_MAX_UNDELIVERED,
        undelivered_retention: settings.messages.undelivered_retention,
        final_retention: settings.messages.final_retention,
        upstream_limits: settings
            .upstreams
            .iter()
            .map(|u| UpstreamLimits {
                upstream: u.name.clone(),
                daily_limit: u.daily_limit,
                monthly_limit: u.monthly_limit,
                timezone: u
                    .limits_timezone
                    .clone()
                    .unwrap_or_else(|| "UTC".to_owned()),
            })
            .collect(),
    }
}
