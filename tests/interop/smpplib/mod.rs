//! python-smpplib 2.2.4, a real and independent ESME, against the in-process broker.
//!
//! Each test starts the broker on 127.0.0.1:0, runs `tests/interop/smpplib_client.py
//! SCENARIO HOST PORT [ARG...]` (killed after 60 s) and asserts here on the JSON lines
//! the script prints: one per PDU smpplib sends (`send`) or reads (`recv`), one per
//! raw write (`send_raw`), one per answered request (`response`, with the request's
//! sequence number), plus the steps (`bound`, `bind_failed`, `unbound`, `closed`, ...).
//!
//! smpplib is taken from the Python environment when `import smpplib` works there
//! (CI pip-installs it); otherwise it is pip-installed once into
//! `CARGO_TARGET_TMPDIR/pydeps-smpplib-2.2.4` and put on PYTHONPATH. Without python3
//! or pip the tests fail, saying so.
//!
//! `SMPPLIB_TRANSCRIPT=1 cargo test --test interop smpplib -- --nocapture` prints every
//! transcript.
//!
//! smpplib quirks (docs/smpp34-checklist.md B5) shape the scenarios: its bind_* and
//! unbind read the
//! very next PDU as the response; it never answers a server-initiated unbind; it raises
//! on unknown TLVs (we keep that strict default); and it refuses to send PDUs its
//! client-side state machine forbids, so those are written to its socket directly.
//! It has no cancel_sm or replace_sm, and its read_pdu raises UnknownCommandError
//! on their responses, so the script writes and reads those raw.
//!
//! After a scenario the tests look at what the broker stored: through its Store
//! API, and (outbox rows and texts) through the sqlite3 CLI on a read-only
//! connection; without sqlite3 on PATH only that last check is skipped, with a note.

mod binds;
mod deliveries;
mod messages;
mod session;
mod transcript;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use testkit::{TestBroker, TestBrokerBuilder};

use crate::script::{Client, Event, Transcript};
use transcript::SmpplibTranscript;

/// The client under test, pinned.
const SMPPLIB: &str = "smpplib==2.2.4";

const ESME_ROK: i64 = 0x00;
const ESME_RINVCMDLEN: i64 = 0x02;
const ESME_RINVCMDID: i64 = 0x03;
const ESME_RINVBNDSTS: i64 = 0x04;
const ESME_RALYBND: i64 = 0x05;
const ESME_RINVMSGID: i64 = 0x0C;
const ESME_RBINDFAIL: i64 = 0x0D;
const ESME_RCANCELFAIL: i64 = 0x11;
const ESME_RREPLACEFAIL: i64 = 0x13;
const ESME_RTHROTTLED: i64 = 0x58;

/// query_sm_resp message_state values (SMPP 3.4 5.2.28).
const ENROUTE: i64 = 1;
const DELETED: i64 = 4;

// ---------------------------------------------------------------------------------
// Python and smpplib
// ---------------------------------------------------------------------------------

/// Where smpplib is importable from: the interpreter's own packages (None), or a
/// directory of ours to put on PYTHONPATH.
struct Python {
    pythonpath: Option<PathBuf>,
}

/// Finds or installs smpplib once per test binary; parallel tests wait for the first.
fn python() -> &'static Python {
    static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare_python) {
        Ok(python) => python,
        Err(message) => panic!("{message}"),
    }
}

fn prepare_python() -> Result<Python, String> {
    if imports_smpplib(None)? {
        return Ok(Python { pythonpath: None });
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps-smpplib-2.2.4");
    if imports_smpplib(Some(&dir))? {
        return Ok(Python {
            pythonpath: Some(dir),
        });
    }
    // A partial install from an interrupted run would make pip complain.
    let _ = std::fs::remove_dir_all(&dir);
    let output = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&dir)
        .args([SMPPLIB, "six"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run python3 -m pip: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "python-smpplib is not importable and `python3 -m pip install --target {} {SMPPLIB} six` \
             failed ({}). The smpplib interop tests need python3 with pip \
             (Debian: apt-get install python3 python3-pip) or `pip install {SMPPLIB}`.\n\
             pip stdout:\n{}\npip stderr:\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    if !imports_smpplib(Some(&dir))? {
        return Err(format!(
            "pip installed {SMPPLIB} into {} but `import smpplib, six` still fails there",
            dir.display()
        ));
    }
    Ok(Python {
        pythonpath: Some(dir),
    })
}

/// Whether `import smpplib, six` works (with `dir` in front of PYTHONPATH, if given).
/// Err when python3 itself cannot be run.
fn imports_smpplib(dir: Option<&Path>) -> Result<bool, String> {
    let mut command = std::process::Command::new("python3");
    command
        .args(["-c", "import smpplib, six"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = dir {
        command.env("PYTHONPATH", pythonpath_with(dir));
    }
    match command.status() {
        Ok(status) => Ok(status.success()),
        Err(err) => Err(format!(
            "cannot run python3 ({err}): the smpplib interop tests need Python 3 with pip on PATH \
             (Debian: apt-get install python3 python3-pip)"
        )),
    }
}

/// `dir` in front of the inherited PYTHONPATH.
fn pythonpath_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).expect("PYTHONPATH entries without separators")
}

/// The scenarios of `tests/interop/smpplib_client.py`, with smpplib importable;
/// with `tls_ca`, every scenario connects over TLS trusting that certificate.
fn smpplib(tls_ca: Option<&Path>) -> Client {
    let mut env = vec![
        ("PYTHONUNBUFFERED", "1".into()),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
    ];
    if let Some(dir) = &python().pythonpath {
        env.push(("PYTHONPATH", pythonpath_with(dir)));
    }
    if let Some(ca) = tls_ca {
        env.push(("SMPPLIB_TLS_CA", ca.into()));
    }
    Client {
        name: "smpplib".to_string(),
        program: "python3",
        script: "tests/interop/smpplib_client.py",
        env,
        print_var: "SMPPLIB_TRANSCRIPT",
        quiet_stderr: false,
    }
}

/// Runs a scenario over plain TCP to its end.
async fn run(scenario: &str, addr: SocketAddr, args: &[&str]) -> Transcript {
    smpplib(None).run(scenario, addr, args).await
}

/// A broker from `builder`, with a TLS listener too when `over_tls`.
async fn start_broker(builder: TestBrokerBuilder, over_tls: bool) -> TestBroker {
    if over_tls { builder.tls() } else { builder }.start().await
}

/// The address a scenario connects to, and the certificate it trusts over TLS.
fn endpoint(broker: &TestBroker, over_tls: bool) -> (SocketAddr, Option<&Path>) {
    if over_tls {
        (broker.tls_addr(), Some(broker.certificate().path.as_path()))
    } else {
        (broker.addr(), None)
    }
}
