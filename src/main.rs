use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use smpp_broker::clock::SystemClock;
use smpp_broker::config::LogFormat;
use smpp_broker::fd_limit;
use smpp_broker::reload::ConfigSource;
use smpp_broker::store::{ReadOnlyStore, Store};
use smpp_broker::{telemetry, Broker, Settings};

/// A persistent queueing SMPP v3.4 broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it the built-in config/default.toml is used.
    #[arg(long, short, global = true, env = "SMPP_BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text (overrides [log] format).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default command).
    Serve,
    /// Print an argon2 hash for [[accounts]] password_hash. Reads the password from stdin.
    HashPassword,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Create the database or bring its schema up to date, then exit. Refused
    /// while a broker runs on the database.
    Migrate,
    /// Print the queue depth per account and state (the queue_depth view). Opens
    /// the database read-only: safe beside a running broker.
    Queues,
    /// Ask the running broker's GET /healthz; exit 0 when it answers 200. For
    /// container healthchecks: the image needs no curl.
    Healthcheck {
        /// Defaults to http://127.0.0.1:PORT/healthz with PORT from [http] bind.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::HashPassword => hash_password(),
        Command::CheckConfig => {
            let settings = Settings::load(cli.config.as_deref())?;
            println!(
                "configuration is valid: {} account(s), {} upstream(s), {} route(s)",
                settings.accounts.len(),
                settings.upstreams.len(),
                settings.routes.len()
            );
            Ok(())
        }
        command @ (Command::Migrate | Command::Queues) => {
            let settings = Settings::load(cli.config.as_deref())?;
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(database_command(
                settings,
                matches!(command, Command::Queues),
            ))
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(url) => url,
                None => {
                    let settings = Settings::load(cli.config.as_deref())?;
                    format!("http://127.0.0.1:{}/healthz", settings.http.bind.port())
                }
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(healthcheck(&url))
        }
        Command::Serve => {
            let loaded = Settings::load(cli.config.as_deref());
            let format = match (&loaded, cli.log_json) {
                (_, true) => LogFormat::Json,
                (Ok(settings), false) => settings.log.format,
                (Err(_), false) => LogFormat::asked_for(
                    cli.config
                        .as_deref()
                        .and_then(|path| std::fs::read_to_string(path).ok())
                        .as_deref(),
                    std::env::var("SMPP_BROKER__LOG__FORMAT").ok().as_deref(),
                ),
            };
            let level = loaded.as_ref().map_or("info", |s| s.log.level.as_str());
            telemetry::init(format, level);
            let started = loaded.map_err(anyhow::Error::from).and_then(|settings| {
                let runtime =
                    tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
                let source = match cli.config {
                    Some(path) => ConfigSource::File(path),
                    None => ConfigSource::Embedded,
                };
                runtime.block_on(serve(source, settings))
            });
            match (started, format) {
                // One JSON line, as the rest of the log: shippers keep it.
                (Err(err), LogFormat::Json) => {
                    tracing::error!(error = %format!("{err:#}"), "smpp-broker stopped: a fatal error");
                    std::process::exit(1)
                }
                (result, _) => result,
            }
        }
    }
}

async fn database_command(settings: Settings, print_queues: bool) -> anyhow::Result<()> {
    let path = Store::describe(&settings.store);
    if !print_queues {
        // On SQLite this takes the database's lock: a running broker keeps it.
        let limits = smpp_broker::store::WriterLimits::of(&settings);
        Store::migrate(&settings.store, limits, Arc::new(SystemClock))
            .await
            .with_context(|| format!("migrate {path}"))?;
        println!("{path}: schema is up to date");
        return Ok(());
    }
    // Read-only, so it may run beside the live broker and changes nothing there.
    let store = ReadOnlyStore::open(&settings.store)
        .await
        .with_context(|| format!("queues {path}"))?;
    let rows = store.queue_depth().await?;
    println!("{:<16} {:<14} {:>10}", "system_id", "state", "messages");
    for (system_id, state, messages) in rows {
        println!("{system_id:<16} {state:<14} {messages:>10}");
    }
    println!();
    println!(
        "{:<16} {:<16} {:<14} {:>10}",
        "route", "upstream", "state", "messages"
    );
    for row in store.route_depth().await? {
        let upstream = if row.upstream.is_empty() {
            "-"
        } else {
            &row.upstream
        };
        println!(
            "{:<16} {upstream:<16} {:<14} {:>10}",
            row.route, row.state, row.messages
        );
    }
    println!();
    println!(
        "{:<16} {:>11} {:>11} {:>11} {:>11}  timezone",
        "upstream", "parts_today", "daily_limit", "this_month", "month_limit"
    );
    let limit = |l: Option<i64>| l.map_or("-".to_owned(), |l| l.to_string());
    for u in store.upstream_usage().await? {
        println!(
            "{:<16} {:>11} {:>11} {:>11} {:>11}  {}",
            u.upstream,
            u.parts_today,
            limit(u.daily_limit),
            u.parts_this_month,
            limit(u.monthly_limit),
            u.timezone
        );
    }
    Ok(())
}

async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("GET {url}: {status} {body}");
    }
    println!("{status} {body}");
    Ok(())
}

async fn serve(source: ConfigSource, settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit();
    let broker = Broker::start_from(source, settings, Arc::new(SystemClock)).await?;
    reload_on_sighup(&broker);
    broker.run_until(shutdown_signal()).await;
    Ok(())
}

/// SIGHUP reads the configuration file again (as `POST /api/reload` does);
/// the outcome is logged.
fn reload_on_sighup(broker: &Broker) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP: reload from the console instead");
                return;
            }
        };
        let reloader = Arc::clone(broker.reloader());
        let stop = broker.shutdown_token();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        // The outcome, either way, is logged by the reload.
                        let _ = reloader.reload("SIGHUP").await;
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = broker;
}

/// The soft open-file limit up to the hard one: connections are descriptors, and
/// the connection caps are fitted under the soft limit (src/fd_limit.rs).
fn raise_open_file_limit() {
    let shown = |n: Option<u64>| n.map_or("unlimited".to_owned(), |n| n.to_string());
    match fd_limit::raise_soft_to_hard() {
        Ok((before, after)) => tracing::info!(
            soft_before = %shown(before.soft),
            soft = %shown(after.soft),
            hard = %shown(after.hard),
            "open-file limit"
        ),
        Err(err) => tracing::warn!(
            error = %err,
            soft = %shown(fd_limit::current().soft),
            hard = %shown(fd_limit::current().hard),
            "could not raise the open-file limit to the hard limit"
        ),
    }
}

/// SIGINT (Ctrl-C) or SIGTERM (docker stop, systemd).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn hash_password() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() || password.len() > 8 {
        bail!(
            "an SMPP password has 1 to 8 characters (got {})",
            password.len()
        );
    }
    let hash = smpp_broker::smpp::auth::hash_password(password)
        .map_err(|err| anyhow::anyhow!("hashing failed: {err}"))?;
    println!("{hash}");
    Ok(())
}
