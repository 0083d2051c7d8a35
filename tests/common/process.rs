//! The broker as a child process, for tests that kill or signal it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_smpp-broker");

/// A config on 127.0.0.1 port 0 with the sandbox upstream and `accounts` appended.
pub fn write_config(dir: &Path, accounts: &str) -> PathBuf {
    let path = dir.join("broker.toml");
    let text = format!(
        "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\nhold = true\n{accounts}",
        dir.join("broker.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    log: Option<JoinHandle<Vec<String>>>,
}

impl BrokerProcess {
    /// Starts the broker and waits for the line that tells its SMPP address.
    pub fn spawn(config: &Path) -> BrokerProcess {
        Self::spawn_with_env(config, &[])
    }

    /// As `spawn`, with `SMPP_BROKER__…` overrides (or other variables) set.
    pub fn spawn_with_env(config: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        Self::spawn_command(Command::new(BIN), config, env)
    }

    /// As `spawn`, under an open-file limit of `soft` descriptors (hard limit
    /// `hard`), set by the shell's ulimit just before it runs the broker.
    pub fn spawn_with_open_files(config: &Path, soft: u64, hard: u64) -> BrokerProcess {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!(
                "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
            ))
            .arg(BIN);
        Self::spawn_command(shell, config, &[])
    }

    /// Runs `command` (the broker binary, or what execs it) with the config.
    fn spawn_command(mut command: Command, config: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        let mut child = command
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .arg("--log-json")
            .stderr(Stdio::piped())
            .spawn()
            .expect("broker binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let field = |line: &str| -> SocketAddr {
            let value = line
                .split("\"addr\":\"")
                .nth(1)
                .and_then(|v| v.split('"').next());
            value.expect("addr field").parse().expect("socket address")
        };
        let (mut addr, mut http_addr) = (None, None);
        while addr.is_none() || http_addr.is_none() {
            let Some(Ok(line)) = lines.next() else {
                panic!("broker exited before listening:\n{}", seen.join("\n"));
            };
            if line.contains("SMPP listening (plain TCP)") {
                addr = Some(field(&line));
            } else if line.contains("HTTP listening") {
                http_addr = Some(field(&line));
            }
            seen.push(line);
        }
        let (addr, http_addr) = (addr.unwrap(), http_addr.unwrap());
        let log = std::thread::spawn(move || {
            seen.extend(lines.map_while(Result::ok));
            seen
        });
        BrokerProcess {
            child,
            addr,
            http_addr,
            log: Some(log),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL: no chance to flush or clean up anything.
    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to end; its exit status and everything it logged.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let log = self.log.take().unwrap().join().unwrap().join("\n");
        (status, log)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
