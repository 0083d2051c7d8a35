//! A throwaway PostgreSQL cluster for tests: Debian's `postgresql` binaries,
//! `initdb` into a temporary folder, the server on a free loopback port with its
//! socket in that folder, stopped (immediately) and removed when dropped. No
//! Docker, no system-wide service.
//!
//! `initdb` refuses to run as root, and CI runs as root: then the cluster
//! belongs to the `postgres` user the package creates, and its commands run as
//! that user (`runuser`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found under \
         /usr/lib/postgresql/*/bin: install Debian's postgresql package \
         (apt-get install postgresql; .ci/run does)"
    )]
    NotInstalled,
    #[error(
        "running as root, the cluster needs the `postgres` user the postgresql package creates"
    )]
    NoPostgresUser,
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}):\n{output}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// A running cluster; stopped and deleted on drop.
pub struct TestPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    // Last: removed after the server has stopped.
    _dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Starts a new cluster: the superuser `postgres`, trusted on loopback.
    pub fn start() -> Result<TestPostgres, PostgresError> {
        let bin = server_binaries().ok_or(PostgresError::NotInstalled)?;
        let as_postgres = is_root();
        let dir = tempfile::tempdir().map_err(|source| PostgresError::Io {
            action: "create the cluster's folder",
            source,
        })?;
        if as_postgres {
            give_to_postgres(dir.path())?;
        }
        let data = dir.path().join("data");
        let port = free_port()?;
        let mut cluster = TestPostgres {
            bin,
            data,
            port,
            as_postgres,
            _dir: dir,
        };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        )?;
        // Another test may take the free port first: then another port.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match cluster.start_server(&data) {
                Ok(()) => break,
                Err(_) if attempts < 3 => cluster.port = free_port()?,
                Err(err) => return Err(err),
            }
        }
        Ok(cluster)
    }

    fn start_server(&self, data: &str) -> Result<(), PostgresError> {
        let socket_dir = self._dir.path().to_string_lossy().into_owned();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port
        );
        let log = self._dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(|_| ())
    }

    /// One cluster for the whole test process, started on first use: tests
    /// that each need only a database of their own (`new_database`) share it
    /// instead of paying an `initdb` each. A watchdog process stops the server
    /// and removes its folder once the test process is gone, however it ends
    /// (a static is never dropped).
    pub fn shared() -> Result<&'static TestPostgres, PostgresError> {
        static SHARED: std::sync::OnceLock<Result<TestPostgres, String>> =
            std::sync::OnceLock::new();
        let cluster = SHARED.get_or_init(|| {
            let cluster = TestPostgres::start().map_err(|err| err.to_string())?;
            cluster.watch_owner().map_err(|err| err.to_string())?;
            Ok(cluster)
        });
        cluster.as_ref().map_err(|err| PostgresError::Failed {
            command: "starting the shared cluster".into(),
            status: std::process::ExitStatus::default(),
            output: err.clone(),
        })
    }

    /// Starts the watchdog that stops this cluster when this process exits.
    fn watch_owner(&self) -> Result<(), PostgresError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{}{} -D '{}' -m immediate -w stop",
            if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl.display(),
            self.data.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self._dir.path().display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .current_dir(self._dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|source| PostgresError::Io {
                action: "start the shared cluster's watchdog",
                source,
            })?;
        Ok(())
    }

    /// Creates a database no other caller in this process gets; returns its URL.
    pub fn new_database(&self) -> Result<String, PostgresError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("db{n}");
        self.create_database(&name)?;
        Ok(self.url(&name))
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping
    /// its data: a database outage, for tests of what clients do meanwhile.
    pub fn stop(&self) -> Result<(), PostgresError> {
        let data = self.data.to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .map(|_| ())
    }

    /// Starts the stopped server again, on the same port.
    pub fn restart(&self) -> Result<(), PostgresError> {
        let data = self.data.to_string_lossy().into_owned();
        self.start_server(&data)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with psql in database `database`; returns what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PostgresError> {
        let port = self.port.to_string();
        let output = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, PostgresError> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            // The folder of the test's own process may be unreadable to `postgres`.
            .current_dir(self._dir.path())
            .output()
            .map_err(|source| PostgresError::Io {
                action: "run a PostgreSQL program",
                source,
            })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            if let Ok(log) = std::fs::read_to_string(self._dir.path().join("server.log")) {
                text.push_str("\nserver.log:\n");
                text.push_str(&log);
            }
            return Err(PostgresError::Failed {
                command: format!("{} {}", path.display(), args.join(" ")),
                status: output.status,
                output: text,
            });
        }
        Ok(output)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// The newest installed server's binaries.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Hands `dir` to the `postgres` user (initdb will not run as root).
fn give_to_postgres(dir: &Path) -> Result<(), PostgresError> {
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()
        .map_err(|source| PostgresError::Io {
            action: "run chown",
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(PostgresError::NoPostgresUser)
    }
}

/// A port nothing listens on now (the server takes it a moment later).
fn free_port() -> Result<u16, PostgresError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| PostgresError::Io {
        action: "find a free port",
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| PostgresError::Io {
            action: "find a free port",
            source,
        })?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_takes_queries_commits_durably_and_goes_away() {
        let cluster = TestPostgres::start().unwrap_or_else(|err| panic!("{err}"));
        cluster.create_database("smpp").unwrap();
        assert_eq!(cluster.psql("smpp", "SELECT 40 + 2").unwrap(), "42");
        // The broker's promise rests on these (issue 15: checked at startup).
        assert_eq!(
            cluster.psql("smpp", "SHOW synchronous_commit").unwrap(),
            "on"
        );
        assert_eq!(cluster.psql("smpp", "SHOW fsync").unwrap(), "on");
        let url = cluster.url("smpp");
        assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
        let data = cluster.data.clone();
        drop(cluster);
        assert!(!data.exists(), "the cluster's folder is removed");
    }

    #[test]
    fn two_clusters_run_side_by_side() {
        let a = TestPostgres::start().unwrap_or_else(|err| panic!("{err}"));
        let b = TestPostgres::start().unwrap_or_else(|err| panic!("{err}"));
        assert_ne!(a.port(), b.port());
        a.create_database("one").unwrap();
        assert!(b.psql("one", "SELECT 1").is_err(), "b has no database one");
    }
}
