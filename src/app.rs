//! Wiring: builds the broker from its settings, binds the listeners (port 0 works,
//! for tests), runs until told to stop, and drains on the way out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::config::UpstreamKind;
use crate::dispatch::{Dispatcher, UpstreamHealth};
use crate::fd_limit;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::smpp::auth::Accounts;
use crate::smpp::delivery::DeliveryHub;
use crate::smpp::listener::{accept_loop, Transport};
use crate::smpp::outbox::OutboxService;
use crate::smpp::registry::Registry;
use crate::smpp::service::MessageService;
use crate::smpp::session::SessionContext;
use crate::smpp::submit::AccountPolicy;
use crate::smpp::tls::{self, TlsError};
use crate::store::{Store, StoreError, WriterLimits};

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
    #[error("store.path: {0}")]
    Store(#[from] StoreError),
}

/// A running broker.
pub struct Broker {
    smpp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    ctx: Arc<SessionContext>,
    health: Arc<UpstreamHealth>,
    http_addr: SocketAddr,
    store: Store,
}

impl Broker {
    pub async fn start(settings: Settings) -> Result<Broker, StartError> {
        Broker::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Starts with an injected wall clock (tests control message times with it).
    pub async fn start_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, StartError> {
        let accounts = Accounts::from_settings(&settings.accounts);
        for system_id in accounts.with_plain_passwords() {
            warn!(
                system_id,
                "account uses a plain-text password: fine for development, use password_hash (smpp-broker hash-password) in production"
            );
        }
        let store = Store::open(
            &settings.store,
            writer_limits(&settings),
            Arc::clone(&clock),
        )
        .await?;
        info!(path = %settings.store.path.display(), "outbox open (SQLite, WAL, synchronous=FULL)");
        let policies = settings.accounts.iter().map(|a| AccountPolicy {
            system_id: a.system_id.clone(),
            upstream: a.upstream.clone(),
            alphabet: a.default_alphabet,
        });
        let messages: Arc<dyn MessageService> = Arc::new(OutboxService::new(
            store.clone(),
            policies,
            Arc::clone(&clock),
            settings.messages.default_validity.as_millis() as i64,
        ));
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let deliveries = DeliveryHub::start(
            store.clone(),
            Arc::clone(&clock),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        let ctx = SessionContext::new(
            settings.smpp.clone(),
            accounts,
            messages,
            shutdown.clone(),
            Some(deliveries),
            Arc::clone(&metrics),
        );
        let tracker = TaskTracker::new();
        let caps = fd_limit::caps_for(&settings);
        let connections = Arc::new(Semaphore::new(caps.smpp));

        // Everything that can fail happens before anything is spawned.
        let tls = match &settings.smpp.tls {
            Some(t) => Some((
                {
                    if t.generate && tls::ensure_self_signed(&t.cert, &t.key)? {
                        warn!(cert = %t.cert.display(), key = %t.key.display(),
                            "smpp.tls: no certificate, so a self-signed one was written; \
                             use a CA-signed certificate in production");
                    }
                    tls::acceptor(&t.cert, &t.key)?
                },
                bind("smpp.tls.bind", t.bind).await?,
            )),
            None => None,
        };
        let plain = bind("smpp.bind", settings.smpp.bind).await?;
        let http_listener = bind("http.bind", settings.http.bind).await?;
        let http_addr = local_addr("http.bind", &http_listener)?;
        let smpp_addr = local_addr("smpp.bind", &plain)?;
        info!(addr = %smpp_addr, "SMPP listening (plain TCP)");
        tracker.spawn(accept_loop(
            plain,
            Transport::Plain,
            Arc::clone(&ctx),
            Arc::clone(&connections),
            tracker.clone(),
        ));
        let mut tls_addr = None;
        if let Some((acceptor, listener)) = tls {
            let addr = local_addr("smpp.tls.bind", &listener)?;
            info!(%addr, "SMPP listening (TLS)");
            tls_addr = Some(addr);
            tracker.spawn(accept_loop(
                listener,
                Transport::Tls(acceptor),
                Arc::clone(&ctx),
                connections,
                tracker.clone(),
            ));
        }
        let health = Arc::new(UpstreamHealth::default());
        let incoming_routes = Arc::new(settings.accounts.iter().fold(
            http::IncomingRoutes::new(),
            |mut routes, a| {
                routes
                    .entry(a.upstream.clone())
                    .or_default()
                    .push((a.system_id.clone(), a.receive_numbers.clone()));
                routes
            },
        ));
        for upstream in settings
            .upstreams
            .iter()
            .filter(|u| u.kind == UpstreamKind::Smsgate)
        {
            match &settings.http.public_url {
                Some(url) => {
                    crate::dispatch::register_webhooks(upstream, url.clone(), shutdown.clone())
                }
                None => {
                    info!(upstream = %upstream.name,
                        "http.public_url not set: no webhooks registered; states come by polling");
                    let poller = crate::dispatch::inbox::InboxPoller::new(
                        upstream,
                        store.clone(),
                        Arc::clone(&incoming_routes),
                        Arc::clone(&clock),
                    );
                    tracker.spawn(poller.run(shutdown.clone()));
                }
            }
        }
        for upstream in settings.upstreams.iter().filter(|u| u.hold) {
            warn!(upstream = %upstream.name, "upstream on hold: its messages wait in the queue, none is sent");
        }
        for dispatcher in settings
            .upstreams
            .iter()
            .filter(|u| !u.hold)
            .map(|upstream| {
                Dispatcher::for_upstream(
                    upstream,
                    store.clone(),
                    Arc::clone(&clock),
                    Arc::clone(&health),
                    Arc::clone(&metrics),
                )
            })
        {
            tracker.spawn(dispatcher.run(shutdown.clone()));
        }
        let http = http::router(HttpState {
            store: store.clone(),
            health: Arc::clone(&health),
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&clock),
            upstreams: Arc::new(
                settings
                    .upstreams
                    .iter()
                    .map(|u| (u.name.clone(), u.hold))
                    .collect(),
            ),
            webhook_keys: Arc::new(
                settings
                    .upstreams
                    .iter()
                    .filter(|u| u.kind == UpstreamKind::Smsgate)
                    .map(|u| (u.name.clone(), u.signing_key.clone()))
                    .collect(),
            ),
            incoming_routes,
            registry: Arc::clone(&ctx.registry),
            accounts: Arc::new(
                settings
                    .accounts
                    .iter()
                    .map(|a| a.system_id.clone())
                    .collect(),
            ),
            body_limits: http::BodyLimits {
                max_size: settings.http.max_body_size,
                read_timeout: settings.http.body_read_timeout,
            },
        });
        info!(addr = %http_addr, "HTTP listening (health, readiness, metrics)");
        let limits = http::ServeLimits {
            max_connections: caps.http,
            timeouts: http::ConnectionTimeouts {
                header_read: settings.http.header_read_timeout,
                idle: settings.http.idle_timeout,
            },
        };
        tracker.spawn(http::serve(
            http_listener,
            http,
            limits,
            shutdown.clone(),
            tracker.clone(),
        ));
        Ok(Broker {
            smpp_addr,
            http_addr,
            tls_addr,
            shutdown,
            tracker,
            ctx,
            store,
            health,
        })
    }

    pub fn smpp_addr(&self) -> SocketAddr {
        self.smpp_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
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
    pub fn upstream_health(&self) -> &Arc<UpstreamHealth> {
        &self.health
    }

    /// A token that stops the broker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until `signal` completes or the shutdown token is cancelled, then drains.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        tokio::select! {
            _ = signal => info!("shutdown requested"),
            _ = self.shutdown.cancelled() => {}
        }
        self.shutdown().await;
    }

    /// Stops accepting, unbinds bound sessions after their in-flight requests are
    /// answered, and waits for them up to the shutdown timeout.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        let limit = self.ctx.settings.shutdown_timeout + self.ctx.settings.response_timeout;
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                sessions = self.tracker.len(),
                "shutdown timeout: closing the remaining sessions"
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
        max_waiting: per_account(|a| a.max_queued),
        assembly_timeout: settings.messages.assembly_timeout,
        max_undelivered: per_account(|a| a.max_undelivered),
        default_max_undelivered: crate::config::DEFAULT_MAX_UNDELIVERED,
        undelivered_retention: settings.messages.undelivered_retention,
        final_retention: settings.messages.final_retention,
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { key, addr, source })
}

fn local_addr(key: &'static str, listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Listen {
        key,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}
