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
use crate::console::{self, ConsoleState, Credentials};
use crate::dispatch::Members;
use crate::fd_limit;
use crate::http::{self, HttpState};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::reload::{self, ConfigSource, Reloader};
use crate::smpp::auth::Accounts;
use crate::smpp::delivery::DeliveryHub;
use crate::smpp::handler::OutboxService;
use crate::smpp::listener::{accept_loop, Transport};
use crate::smpp::registry::{Registry, SharedSessions};
use crate::smpp::service::MessageService;
use crate::smpp::session::SessionContext;
use crate::smpp::tls::{self, TlsError};
use crate::store::{Store, StoreError, WriterLimits, SESSION_SEEN_EVERY_MS};
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
    /// Not a `source`: the message already carries the store's own, and an
    /// error chain would print it twice.
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for StartError {
    fn from(err: StoreError) -> StartError {
        StartError::Store(err)
    }
}

/// A running broker.
pub struct Broker {
    smpp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: SocketAddr,
    tasks: Tasks,
    ctx: Arc<SessionContext>,
    reloader: Arc<Reloader>,
    http_addr: SocketAddr,
    store: Store,
}

impl Broker {
    pub async fn start(settings: Settings) -> Result<Broker, StartError> {
        Broker::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Starts with an injected wall clock (tests control message times with it),
    /// from settings given in code: there is no file for a reload to read.
    pub async fn start_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, StartError> {
        Broker::start_from(ConfigSource::Given, settings, clock).await
    }

    /// Starts from `settings`, read from `source`, which a reload (SIGHUP,
    /// `POST /api/reload`) reads again. Everything that can fail (the
    /// database, the certificate, the ports) comes before anything is
    /// spawned; every task goes on the tracker that [`Broker::shutdown`] drains.
    pub async fn start_from(
        source: ConfigSource,
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
        let leases = Arc::new(Live::new(crate::cluster::wanted_leases(&settings)));
        crate::cluster::join(&running.store, Arc::clone(&leases), &running.tasks).await;
        let (ctx, messages) = running.start_sessions(&settings, accounts);
        running.keep_binds_seen(&ctx);
        let addrs = listeners.addrs();
        let caps = fd_limit::caps_for(&settings);
        running.serve_smpp(listeners.smpp, listeners.tls, &ctx, caps.smpp);
        let parts = reload::Parts {
            store: running.store.clone(),
            clock: Arc::clone(&running.clock),
            metrics: Arc::clone(&running.metrics),
            tasks: running.tasks.clone(),
            sessions: Arc::clone(&ctx),
            messages,
            leases,
        };
        let reloader = Arc::new(Reloader::start(source, settings.clone(), parts).await?);
        let state = HttpState {
            store: running.store.clone(),
            metrics: Arc::clone(&running.metrics),
            clock: Arc::clone(&running.clock),
            registry: Arc::clone(&ctx.registry),
            configured: Arc::clone(reloader.configured()),
            body_limits: http::BodyLimits {
                max_size: settings.http.max_body_size,
                read_timeout: settings.http.body_read_timeout,
            },
        };
        running.serve_http(&settings, listeners.http, caps.http, state);
        let console = ConsoleState {
            store: running.store.clone(),
            configured: Arc::clone(reloader.configured()),
            reloader: Arc::clone(&reloader),
            registry: Arc::clone(&ctx.registry),
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
            reloader,
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

    /// Which upstreams are paused, and why (those of the last reload).
    pub fn members(&self) -> Arc<Members> {
        Arc::clone(&self.reloader.configured().load().members)
    }

    /// Reads the configuration again and applies it (SIGHUP).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
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
    let store = Store::open(
        &settings.store,
        WriterLimits::of(settings),
        Arc::clone(clock),
    )
    .await?;
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
    /// store, and the hub that hands receipts and incoming messages to
    /// receivers; and the message service itself, whose accounts a reload sets.
    fn start_sessions(
        &self,
        settings: &Settings,
        accounts: Accounts,
    ) -> (Arc<SessionContext>, Arc<OutboxService>) {
        let messages = Arc::new(OutboxService::new(
            self.store.clone(),
            reload::account_policies(settings),
            Arc::clone(&self.clock),
            settings.messages.default_validity.as_millis() as i64,
        ));
        messages.log_refusals(self.tasks.tracker(), self.tasks.stop_token());
        let deliveries = DeliveryHub::start(
            self.store.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.metrics),
            self.tasks.stop_token(),
            self.tasks.tracker(),
        );
        let ctx = SessionContext::new(
            settings.smpp.clone(),
            accounts,
            Arc::clone(&messages) as Arc<dyn MessageService>,
            self.tasks.stop_token(),
            Some(deliveries),
            Arc::clone(&self.metrics),
            self.store
                .cluster()
                .map(|cluster| SharedSessions::start(cluster, &self.tasks)),
        );
        (ctx, messages)
    }

    /// Marks the bound sessions' recorded binds as seen every
    /// SESSION_SEEN_EVERY_MS, so that the binds their messages name are kept
    /// as long as the messages (store: `forget_binds`).
    fn keep_binds_seen(&self, ctx: &Arc<SessionContext>) {
        let (store, registry) = (self.store.clone(), Arc::clone(&ctx.registry));
        self.tasks.spawn_until_stopped(async move {
            let every = std::time::Duration::from_millis(SESSION_SEEN_EVERY_MS as u64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let binds = registry.binds();
                if binds.is_empty() {
                    continue;
                }
                if let Err(err) = store.binds_seen(binds).await {
                    warn!(error = %err, "marking the bound sessions as seen failed; tried again in an hour");
                }
            }
        });
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
