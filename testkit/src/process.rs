//! The broker binary as a child process: for tests that kill or signal it, and
//! for smpp-bench, which measures it from outside.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A config on 127.0.0.1 port 0 with its database in `dir`, the sandbox
/// upstream on hold and `accounts` appended; written to `dir/broker.toml`.
pub fn write_config(dir: &Path, accounts: &str) -> PathBuf {
    let path = dir.join("broker.toml");
    let text = format!(
        "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\nhold = true\n{accounts}",
        dir.join("broker.db").display()
    );
    std::fs::write(&path, text).expect("write the broker config");
    path
}

/// Why a broker process did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("broker exited before listening:\n{log}")]
    Exited { log: String },
    #[error("broker did not start within {} s:\n{log}", .limit.as_secs())]
    TooSlow { limit: Duration, log: String },
    #[error("no socket address in the broker's line: {line}")]
    NoAddress { line: String },
}

/// How to run the broker: `serve` with `--config CONFIG --log-json`, then
/// [`Launch::start`] or [`Launch::spawn`].
pub struct Launch {
    binary: OsString,
    config: PathBuf,
    env: Vec<(OsString, OsString)>,
    open_files: Option<(u64, u64)>,
    startup_limit: Duration,
}

impl Launch {
    pub fn new(binary: impl Into<OsString>, config: &Path) -> Launch {
        Launch {
            binary: binary.into(),
            config: config.to_owned(),
            env: Vec::new(),
            open_files: None,
            startup_limit: Duration::from_secs(60),
        }
    }

    /// With these environment variables (`SMPP_BROKER__…` overrides, say).
    pub fn envs<K: Into<OsString>, V: Into<OsString>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Launch {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Under an open-file limit of `soft` descriptors (hard limit `hard`), set by
    /// the shell's ulimit just before it runs the broker.
    pub fn open_files(mut self, soft: u64, hard: u64) -> Launch {
        self.open_files = Some((soft, hard));
        self
    }

    /// How long the broker may take to tell both its addresses (default 60 s).
    pub fn startup_limit(mut self, limit: Duration) -> Launch {
        self.startup_limit = limit;
        self
    }

    /// Starts the broker and waits for the log lines that tell its SMPP and HTTP
    /// addresses (port 0 makes them different every run).
    pub fn start(self) -> Result<BrokerProcess, LaunchError> {
        let mut command = match self.open_files {
            None => Command::new(&self.binary),
            Some((soft, hard)) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!(
                        "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(&self.binary);
                shell
            }
        };
        let mut child = command
            .envs(self.env)
            .arg("--config")
            .arg(&self.config)
            .arg("--log-json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                binary: self.binary.to_string_lossy().into_owned(),
                source,
            })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        // One thread reads every line, so the broker never blocks on a full
        // pipe; the lines come here until both addresses are known.
        let (lines_tx, lines) = mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line.clone());
                seen.push(line);
            }
            seen
        });
        let deadline = Instant::now() + self.startup_limit;
        let (mut addr, mut http_addr, mut seen) = (None, None, Vec::new());
        while addr.is_none() || http_addr.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(wait) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let log = seen.join("\n");
                    return Err(LaunchError::Exited { log });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let (limit, log) = (self.startup_limit, seen.join("\n"));
                    return Err(LaunchError::TooSlow { limit, log });
                }
            };
            let which = if line.contains("SMPP listening (plain TCP)") {
                &mut addr
            } else if line.contains("HTTP listening") {
                &mut http_addr
            } else {
                seen.push(line);
                continue;
            };
            match logged_addr(&line) {
                Some(logged) => *which = Some(logged),
                None => return Err(LaunchError::NoAddress { line }),
            }
            seen.push(line);
        }
        Ok(BrokerProcess {
            child,
            addr: addr.expect("checked above"),
            http_addr: http_addr.expect("checked above"),
            log: Some(log),
            lines,
        })
    }

    /// As [`Launch::start`], failing the test when the broker does not come up.
    pub fn spawn(self) -> BrokerProcess {
        self.start().unwrap_or_else(|err| panic!("{err}"))
    }
}

/// The `"addr":"…"` field of a JSON log line.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    line.split("\"addr\":\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

/// A running broker process, killed on drop.
pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    log: Option<JoinHandle<Vec<String>>>,
    /// The lines logged since it came up, as they come.
    lines: mpsc::Receiver<String>,
}

impl BrokerProcess {
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// The next line logged that contains `needle`, waiting up to `limit`;
    /// fails the test when none comes.
    pub fn next_line_with(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!("no line with {needle:?} within {limit:?}: {err}"),
            }
        }
    }

    /// SIGKILL: no chance to flush or clean up anything.
    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to end; its exit status and everything it logged.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait for the broker");
        let log = self.log.take().expect("the log is read once");
        (status, log.join().expect("log reader").join("\n"))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
