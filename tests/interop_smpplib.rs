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
//! `SMPPLIB_TRANSCRIPT=1 cargo test --test interop_smpplib -- --nocapture` prints every
//! transcript.
//!
//! smpplib quirks (checklist B5) shape the scenarios: its bind_* and unbind read the
//! very next PDU as the response; it never answers a server-initiated unbind; it raises
//! on unknown TLVs (we keep that strict default); and it refuses to send PDUs its
//! client-side state machine forbids, so those are written to its socket directly.
//! It has no cancel_sm or replace_sm, and its read_pdu raises UnknownCommandError
//! on their responses, so the script writes and reads those raw.
//!
//! After a scenario the tests look at what the broker stored: through its Store
//! API, and (outbox rows and texts) through the sqlite3 CLI on a read-only
//! connection; without sqlite3 on PATH only that last check is skipped, with a note.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use common::{start_broker, start_tls_broker, TestBroker, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The client under test, pinned.
const SMPPLIB: &str = "smpplib==2.2.4";
/// The longest a scenario script may run before it is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

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

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpplib_client.py")
}

// ---------------------------------------------------------------------------------
// The events the script prints: flat JSON objects, one per line
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone)]
struct Event {
    line: String,
    fields: BTreeMap<String, Value>,
}

impl Event {
    fn parse(line: &str) -> Result<Event, String> {
        let fields = parse_flat_json(line).map_err(|err| format!("{err} in {line:?}"))?;
        Ok(Event {
            line: line.to_string(),
            fields,
        })
    }

    fn name(&self) -> &str {
        self.opt_str("event").unwrap_or("")
    }

    fn is(&self, name: &str) -> bool {
        self.name() == name
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        match self.fields.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn opt_int(&self, key: &str) -> Option<i64> {
        match self.fields.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> &str {
        self.opt_str(key)
            .unwrap_or_else(|| panic!("event has no string {key:?}: {}", self.line))
    }

    fn int(&self, key: &str) -> i64 {
        self.opt_int(key)
            .unwrap_or_else(|| panic!("event has no integer {key:?}: {}", self.line))
    }

    fn client(&self) -> &str {
        self.opt_str("client").unwrap_or("")
    }
}

/// Parses `{"key": value, ...}` where values are strings, integers, booleans or null:
/// all the script ever prints (json.dumps of a flat dict).
fn parse_flat_json(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut chars = text.trim().chars().peekable();
    let mut fields = BTreeMap::new();
    fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
    fn hex4(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<u32, String> {
        let hex: String = chars.by_ref().take(4).collect();
        u32::from_str_radix(&hex, 16).map_err(|e| format!("{e}: \\u{hex}"))
    }
    fn string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
        if chars.next() != Some('"') {
            return Err("expected a string".into());
        }
        let mut out = String::new();
        loop {
            match chars.next().ok_or("unterminated string")? {
                '"' => return Ok(out),
                '\\' => match chars.next().ok_or("unterminated escape")? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let mut code = hex4(chars)?;
                        // json.dumps writes a character beyond the BMP (an emoji) as
                        // a surrogate pair: \uD83D\uDE00.
                        if (0xD800..0xDC00).contains(&code) {
                            if chars.next() != Some('\\') || chars.next() != Some('u') {
                                return Err("a lone high surrogate".into());
                            }
                            let low = hex4(chars)?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err("a high surrogate without its low one".into());
                            }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        }
                        out.push(char::from_u32(code).ok_or("a lone low surrogate")?);
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
    }
    skip_ws(&mut chars);
    if chars.next() != Some('{') {
        return Err("expected '{'".into());
    }
    loop {
        skip_ws(&mut chars);
        match chars.peek() {
            Some('}') => {
                chars.next();
                break;
            }
            Some(',') => {
                chars.next();
                continue;
            }
            _ => {}
        }
        let key = string(&mut chars)?;
        skip_ws(&mut chars);
        if chars.next() != Some(':') {
            return Err("expected ':'".into());
        }
        skip_ws(&mut chars);
        let value = match chars.peek() {
            Some('"') => Value::Str(string(&mut chars)?),
            Some(c) if *c == '-' || c.is_ascii_digit() => {
                let mut number = String::new();
                while chars
                    .peek()
                    .is_some_and(|c| *c == '-' || c.is_ascii_digit())
                {
                    number.push(chars.next().unwrap());
                }
                Value::Int(number.parse().map_err(|e| format!("{e}: {number}"))?)
            }
            Some(_) => {
                let word: String =
                    std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphabetic())).collect();
                match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    other => return Err(format!("unexpected value {other:?}")),
                }
            }
            None => return Err("unexpected end".into()),
        };
        fields.insert(key, value);
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------------
// Running a scenario
// ---------------------------------------------------------------------------------

/// A running scenario script.
struct Script {
    scenario: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    events: Vec<Event>,
    deadline: Instant,
}

/// What a finished script printed, and how it ended.
struct Transcript {
    scenario: String,
    events: Vec<Event>,
    stderr: String,
    exit: Option<i32>,
    killed: bool,
}

impl Script {
    fn start(scenario: &str, addr: SocketAddr, args: &[&str]) -> Script {
        Script::start_over(scenario, addr, args, None)
    }

    /// As `start`; with `tls_ca`, the script connects over TLS trusting it.
    fn start_over(
        scenario: &str,
        addr: SocketAddr,
        args: &[&str],
        tls_ca: Option<&Path>,
    ) -> Script {
        let python = python();
        let mut command = Command::new("python3");
        if let Some(ca) = tls_ca {
            command.env("SMPPLIB_TLS_CA", ca);
        }
        command
            .arg(script_path())
            .arg(scenario)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &python.pythonpath {
            command.env("PYTHONPATH", pythonpath_with(dir));
        }
        let mut child = command.spawn().unwrap_or_else(|err| {
            panic!("cannot start python3 {}: {err}", script_path().display())
        });
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text).await;
            text
        });
        Script {
            scenario: scenario.to_string(),
            child,
            stdout,
            stderr: Some(stderr),
            events: Vec::new(),
            deadline: Instant::now() + SCRIPT_LIMIT,
        }
    }

    /// Runs a scenario to its end.
    async fn run(scenario: &str, addr: SocketAddr, args: &[&str]) -> Transcript {
        Script::start(scenario, addr, args).finish().await
    }

    /// Reads events until one named `name` comes; fails (with the transcript) when
    /// the script ends or times out first.
    async fn wait_for(&mut self, name: &str) -> Event {
        loop {
            match tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let event = self.push(line);
                    if event.as_ref().is_some_and(|e| e.is(name)) {
                        return event.unwrap();
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let transcript = self.stop().await;
                    panic!("the script ended before a {name:?} event\n{transcript}");
                }
                Err(_) => {
                    let transcript = self.stop().await;
                    panic!("no {name:?} event within {SCRIPT_LIMIT:?}\n{transcript}");
                }
            }
        }
    }

    fn push(&mut self, line: String) -> Option<Event> {
        match Event::parse(&line) {
            Ok(event) => {
                self.events.push(event.clone());
                Some(event)
            }
            Err(err) => {
                // Not an event (smpplib never prints on stdout, but keep it visible).
                self.events.push(Event {
                    line: format!("(unparsed: {err}) {line}"),
                    fields: BTreeMap::new(),
                });
                None
            }
        }
    }

    /// Reads the remaining events and waits for the script to exit (killing it at the
    /// deadline).
    async fn finish(mut self) -> Transcript {
        let mut killed = false;
        loop {
            match tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => {
                    self.push(line);
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => {
                    killed = true;
                    break;
                }
            }
        }
        let mut transcript = if killed {
            self.stop().await
        } else {
            match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
                Ok(status) => {
                    let exit = status.ok().and_then(|s| s.code());
                    self.transcript(exit, false).await
                }
                Err(_) => self.stop().await,
            }
        };
        transcript.scenario = self.scenario.clone();
        if std::env::var_os("SMPPLIB_TRANSCRIPT").is_some() {
            eprintln!("{transcript}");
        }
        transcript
    }

    /// Kills the script and returns what it printed.
    async fn stop(&mut self) -> Transcript {
        let _ = self.child.kill().await;
        self.transcript(None, true).await
    }

    async fn transcript(&mut self, exit: Option<i32>, killed: bool) -> Transcript {
        let stderr = match self.stderr.take() {
            Some(handle) => tokio::time::timeout(PATIENCE, handle)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        Transcript {
            scenario: self.scenario.clone(),
            events: self.events.clone(),
            stderr,
            exit,
            killed,
        }
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- smpplib scenario {:?}: exit {:?}{} ---",
            self.scenario,
            self.exit,
            if self.killed {
                " (killed at the time limit)"
            } else {
                ""
            }
        )?;
        for event in &self.events {
            writeln!(f, "  {}", event.line)?;
        }
        writeln!(f, "--- stderr ---\n{}--- end ---", self.stderr)
    }
}

impl Transcript {
    /// Fails with `what` and the whole transcript unless `ok`.
    fn check(&self, ok: bool, what: impl fmt::Display) {
        assert!(ok, "{what}\n{self}");
    }

    /// The scenario ran to its end (exit 0, "done").
    fn assert_completed(&self) -> &Self {
        self.check(
            self.exit == Some(0) && self.events.iter().any(|e| e.is("done")),
            "the smpplib script did not complete",
        );
        self
    }

    fn find(&self, name: &str, client: &str) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| e.is(name) && e.client() == client)
    }

    /// The first `name` event of `client`.
    fn first(&self, name: &str, client: &str) -> &Event {
        match self.find(name, client) {
            Some(event) => event,
            None => panic!("no {name:?} event for client {client:?}\n{self}"),
        }
    }

    fn count(&self, predicate: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| predicate(e)).count()
    }

    /// All responses to requests named `request`, each checked to echo the
    /// request's sequence number.
    fn responses(&self, request: &str) -> Vec<&Event> {
        let found: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.is("response") && e.opt_str("request") == Some(request))
            .collect();
        for event in &found {
            self.check(
                event.int("sequence") == event.int("request_sequence"),
                format_args!(
                    "the response to {request} echoes its sequence number: {}",
                    event.line
                ),
            );
        }
        found
    }

    /// The single response to `request`, checked for command and status.
    fn response(&self, request: &str, command: &str, status: i64) -> &Event {
        let found = self.responses(request);
        self.check(
            found.len() == 1,
            format_args!("exactly one response to {request}, got {}", found.len()),
        );
        let event = found[0];
        self.check(
            event.str("command") == command && event.int("status") == status,
            format_args!(
                "{request} is answered by {command} with status 0x{status:02X}: {}",
                event.line
            ),
        );
        event
    }

    /// The responses to requests the script labelled `label`, in order, each
    /// checked to echo its request's sequence number.
    fn labelled(&self, label: &str) -> Vec<&Event> {
        let found: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.is("response") && e.opt_str("label") == Some(label))
            .collect();
        for event in &found {
            self.check(
                event.int("sequence") == event.int("request_sequence"),
                format_args!("the response echoes its request's sequence: {}", event.line),
            );
        }
        found
    }

    /// The single response labelled `label`, checked for command and status.
    fn answer(&self, label: &str, command: &str, status: i64) -> &Event {
        let found = self.labelled(label);
        self.check(
            found.len() == 1,
            format_args!(
                "exactly one response labelled {label:?}, got {}",
                found.len()
            ),
        );
        let event = found[0];
        self.check(
            event.str("command") == command && event.int("status") == status,
            format_args!(
                "{label:?} is answered by {command} with status 0x{status:02X}: {}",
                event.line
            ),
        );
        event
    }

    /// A submit_sm_resp or data_sm_resp with status 0 and a message_id of 1 to 20
    /// decimal digits; returns the message_id.
    fn accepted<'a>(&self, event: &'a Event) -> &'a str {
        let id = event.opt_str("message_id").unwrap_or("");
        self.check(
            event.int("status") == ESME_ROK
                && !id.is_empty()
                && id.len() <= 20
                && id.bytes().all(|b| b.is_ascii_digit()),
            format_args!(
                "accepted with a decimal message_id of at most 20 digits: {}",
                event.line
            ),
        );
        id
    }

    /// A query_sm_resp for `message_id` saying `state`, error_code 0; returns
    /// its final_date.
    fn queried(&self, label: &str, message_id: &str, state: i64) -> &str {
        let event = self.answer(label, "query_sm_resp", ESME_ROK);
        self.check(
            event.opt_str("message_id") == Some(message_id)
                && event.opt_int("message_state") == Some(state)
                && event.opt_int("error_code") == Some(0),
            format_args!(
                "{label:?}: message_id {message_id}, message_state {state}, error_code 0: {}",
                event.line
            ),
        );
        event.str("final_date")
    }

    /// A header-only cancel_sm_resp or replace_sm_resp (read raw by the script).
    fn header_only(&self, label: &str, command: &str, status: i64) {
        let event = self.answer(label, command, status);
        self.check(
            event.opt_int("body_length") == Some(0),
            format_args!("{command} has no body: {}", event.line),
        );
    }

    /// A successful smpplib bind_* by `client`.
    fn assert_bound(&self, client: &str, kind: &str) {
        let bound = self.first("bound", client);
        self.check(
            bound.int("status") == ESME_ROK
                && bound.str("command") == format!("bind_{kind}_resp")
                && bound.str("system_id") == "smpp-broker"
                && bound.opt_int("sc_interface_version") == Some(0x34),
            format_args!(
                "{client} bound as {kind} with system_id smpp-broker and sc_interface_version 0x34: {}",
                bound.line
            ),
        );
    }

    /// smpplib's bind_* raised PDUError with `status`.
    fn assert_bind_failed(&self, client: &str, status: i64) {
        self.check(
            self.find("bound", client).is_none(),
            format_args!("{client} must not bind"),
        );
        let failed = self.first("bind_failed", client);
        self.check(
            failed.int("status") == status,
            format_args!("{client}'s bind fails with 0x{status:02X}: {}", failed.line),
        );
    }

    /// smpplib's unbind() got unbind_resp with status 0.
    fn assert_unbound(&self, client: &str) {
        let unbound = self.first("unbound", client);
        self.check(
            unbound.str("command") == "unbind_resp" && unbound.int("status") == ESME_ROK,
            format_args!(
                "{client}'s unbind is answered by unbind_resp: {}",
                unbound.line
            ),
        );
    }

    /// The broker closed `client`'s connection (read saw EOF, no timeout).
    fn assert_closed(&self, client: &str) -> &Event {
        self.check(
            self.find("still_open", client).is_none(),
            format_args!("the broker closes {client}'s connection"),
        );
        self.first("closed", client)
    }

    /// smpplib's own enquire_link (through its state checks) was answered.
    fn assert_enquire_links_answered(&self) {
        let answered = self.responses("enquire_link");
        self.check(!answered.is_empty(), "an enquire_link was sent");
        for event in answered {
            self.check(
                event.str("command") == "enquire_link_resp" && event.int("status") == ESME_ROK,
                format_args!(
                    "enquire_link answered with enquire_link_resp: {}",
                    event.line
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// What the broker stored
// ---------------------------------------------------------------------------------

/// One outbox row, as the parts of a message lead to it.
#[derive(Debug, Clone, PartialEq)]
struct OutboxRow {
    id: String,
    state: String,
    text: String,
    data_coding: i64,
    last_error: String,
}

/// The outbox row each message_id leads to (None when it leads to none), read from
/// the broker's database as an operator would.
async fn outbox_rows(broker: &TestBroker) -> BTreeMap<String, Option<OutboxRow>> {
    let rows = common::db_rows(
        broker.dir.path(),
        "SELECT m.message_id, coalesce(o.id, ''), coalesce(o.state, ''), \
         coalesce(o.text, ''), coalesce(o.data_coding, -1), coalesce(o.last_error, '') \
         FROM messages m LEFT JOIN outbox o ON o.id = m.outbox_id ORDER BY m.message_id",
    )
    .await;
    rows.into_iter()
        .map(|r| {
            assert_eq!(r.len(), 6, "six columns: {r:?}");
            let row = (!r[1].is_empty()).then(|| OutboxRow {
                id: r[1].clone(),
                state: r[2].clone(),
                text: r[3].clone(),
                data_coding: r[4].parse().expect("data_coding"),
                last_error: r[5].clone(),
            });
            (r[0].clone(), row)
        })
        .collect()
}

async fn outbox_count(broker: &TestBroker) -> usize {
    let rows = common::db_rows(broker.dir.path(), "SELECT count(*) FROM outbox").await;
    rows[0][0].parse().expect("a count")
}

/// The one outbox row every id in `ids` leads to.
fn the_row_of(rows: &BTreeMap<String, Option<OutboxRow>>, ids: &[&str]) -> OutboxRow {
    let found: Vec<&OutboxRow> = ids
        .iter()
        .map(|id| {
            rows.get(*id)
                .unwrap_or_else(|| panic!("message {id} has a messages row"))
                .as_ref()
                .unwrap_or_else(|| panic!("message {id} leads to an outbox row"))
        })
        .collect();
    assert!(
        found.iter().all(|row| *row == found[0]),
        "the ids {ids:?} all lead to one outbox row: {found:?}"
    );
    found[0].clone()
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// bind_<kind> as demo; a submit (TX/TRX through smpplib's send_message; RX written
/// raw, since smpplib refuses); enquire_link; unbind; the broker closes.
async fn bind_submit_unbind(kind: &str) {
    let broker = start_broker("").await;
    let t = Script::run("bind", broker.addr(), &[kind]).await;
    t.assert_completed();
    t.assert_bound("esme", kind);
    if kind == "receiver" {
        t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    } else {
        let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
        common::assert_stored(&broker, &[id], ENROUTE as u8).await;
    }
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
    common::wait_until_no_sessions(&broker, "demo").await;
}

#[tokio::test]
async fn smpplib_binds_as_transmitter_submits_and_unbinds() {
    bind_submit_unbind("transmitter").await;
}

#[tokio::test]
async fn smpplib_binds_as_receiver_and_unbinds() {
    bind_submit_unbind("receiver").await;
}

#[tokio::test]
async fn smpplib_binds_as_transceiver_submits_and_unbinds() {
    bind_submit_unbind("transceiver").await;
}

#[tokio::test]
async fn smpplib_wrong_password_is_rbindfail() {
    let broker = start_broker("").await;
    let t = Script::run(
        "bind_error",
        broker.addr(),
        &["transceiver", "demo", "wrong"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_disabled_bind_type_is_rbindfail() {
    let broker = start_broker("").await;
    let t = Script::run(
        "bind_error",
        broker.addr(),
        &["transmitter", "rxonly", "rx"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_too_many_sessions_is_rbindfail() {
    let broker = start_broker("").await;
    let t = Script::run("too_many_sessions", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("first", "transceiver");
    t.assert_bind_failed("second", ESME_RBINDFAIL);
    t.assert_closed("second");
    t.assert_unbound("first");
    t.assert_closed("first");
    t.assert_bound("third", "receiver");
    t.assert_unbound("third");
}

#[tokio::test]
async fn smpplib_bind_twice_is_ralybnd_and_the_session_stays_bound() {
    let broker = start_broker("").await;
    let t = Script::run("bind_twice", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    t.response("bind_receiver", "bind_receiver_resp", ESME_RALYBND);
    t.assert_enquire_links_answered();
    // Still bound as a transmitter: accepted (ESME_RINVBNDSTS would mean the bind
    // was lost).
    t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_submit_before_bind_is_rinvbndsts() {
    let broker = start_broker("").await;
    let t = Script::run("submit_before_bind", broker.addr(), &[]).await;
    t.assert_completed();
    t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    t.assert_enquire_links_answered();
    t.assert_bound("esme", "transmitter");
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_unknown_command_id_gets_generic_nack_and_the_session_goes_on() {
    let broker = start_broker("").await;
    let t = Script::run("unknown_command", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    let nack = t.response("unknown", "generic_nack", ESME_RINVCMDID);
    t.check(nack.int("sequence") == 77, "the nack echoes sequence 77");
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_truncated_body_gets_rinvcmdlen_and_the_session_goes_on() {
    let broker = start_broker("").await;
    let t = Script::run("truncated_body", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    t.response("truncated submit_sm", "submit_sm_resp", ESME_RINVCMDLEN);
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_oversized_command_length_gets_generic_nack_then_close() {
    let broker = start_broker("").await;
    let t = Script::run("oversized_length", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    let nack = t.response("oversized", "generic_nack", ESME_RINVCMDLEN);
    t.check(nack.int("sequence") == 9, "the nack echoes sequence 9");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_enquire_link_both_ways() {
    // The broker pings every 300 ms and gives up 1 s after an unanswered ping:
    // three pings answered by smpplib's read_once keep the session alive.
    let broker = start_broker("enquire_link_interval = \"300ms\"\nresponse_timeout = \"1s\"").await;
    let t = Script::run("enquire_link", broker.addr(), &["3"]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.assert_enquire_links_answered();
    let pings: Vec<&Event> = t
        .events
        .iter()
        .filter(|e| e.is("recv") && e.str("command") == "enquire_link")
        .collect();
    t.check(
        pings.len() >= 3,
        "smpplib received the broker's enquire_links",
    );
    for ping in &pings {
        let sequence = ping.int("sequence");
        t.check(
            (1..=0x7FFF_FFFF).contains(&sequence),
            format_args!("server sequence numbers are 1..=0x7FFFFFFF: {}", ping.line),
        );
        t.check(
            t.count(|e| {
                e.is("send")
                    && e.str("command") == "enquire_link_resp"
                    && e.int("sequence") == sequence
                    && e.int("status") == ESME_ROK
            }) == 1,
            format_args!("smpplib answered the ping with sequence {sequence}"),
        );
    }
    t.response("unbind", "unbind_resp", ESME_ROK);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_inactivity_gets_an_unbind_then_the_connection_closes() {
    let broker = start_broker(
        "enquire_link_interval = \"1h\"\ninactivity_timeout = \"300ms\"\nresponse_timeout = \"300ms\"",
    )
    .await;
    let t = Script::run("inactivity", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    let unbinds = t.count(|e| e.is("recv") && e.str("command") == "unbind");
    t.check(unbinds == 1, "smpplib received one unbind from the broker");
    t.check(
        t.count(|e| e.is("send") && e.str("command") == "unbind_resp") == 0,
        "smpplib 2.2.4 does not answer a server unbind",
    );
    let closed = t.assert_closed("esme");
    t.check(
        closed.int("after_ms") < 5_000,
        "closed after inactivity_timeout + response_timeout, not much later",
    );
    common::wait_until_no_sessions(&broker, "demo").await;
}

#[tokio::test]
async fn smpplib_server_unbind_at_shutdown_unanswered_still_closes_and_shutdown_completes() {
    let broker = start_broker("response_timeout = \"300ms\"").await;
    let mut script = Script::start("server_unbind", broker.addr(), &[]);
    script.wait_for("listening").await;

    let started = Instant::now();
    let shutdown = tokio::spawn(broker.broker.shutdown());
    let t = script.finish().await;
    let finished = tokio::time::timeout(PATIENCE, shutdown).await;
    let took = started.elapsed();
    t.check(matches!(finished, Ok(Ok(()))), "Broker::shutdown completes");
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.check(
        t.count(|e| e.is("recv") && e.str("command") == "unbind") == 1,
        "smpplib received the broker's unbind",
    );
    t.check(
        t.count(|e| e.is("send") && e.str("command") == "unbind_resp") == 0,
        "smpplib 2.2.4 does not answer a server unbind",
    );
    t.assert_closed("esme");
    // Had the broker waited for the unanswered unbind until shutdown_timeout (10 s),
    // this would take longer; response_timeout (300 ms) is what bounds it.
    t.check(
        took < Duration::from_secs(5),
        format_args!(
            "shutdown took {took:?}: the unanswered unbind is bounded by response_timeout"
        ),
    );
}

#[tokio::test]
async fn smpplib_binds_over_tls_trusting_the_broker_certificate() {
    let tls_broker = start_tls_broker("").await;
    let cert = tls_broker.cert_path.clone();
    let broker = tls_broker.broker;
    let tls_addr = broker.broker.tls_addr().expect("TLS listener");
    let cert_arg = cert.to_str().expect("UTF-8 temp path");
    let t = Script::run("tls", tls_addr, &[cert_arg]).await;
    t.assert_completed();
    t.first("connect_failed", "untrusted");
    t.check(
        t.find("bound", "untrusted").is_none(),
        "a client not trusting the certificate does not get through",
    );
    let tls_event = t.first("tls", "esme");
    t.check(
        tls_event.str("version").starts_with("TLSv1."),
        "a TLS session was negotiated",
    );
    t.assert_bound("esme", "transceiver");
    t.assert_enquire_links_answered();
    let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    common::assert_stored(&broker, &[id], ENROUTE as u8).await;
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_submits_above_the_account_rate_are_throttled() {
    let broker = start_broker("").await;
    let t = Script::run("throttle", broker.addr(), &["20"]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    let responses = t.responses("submit_sm");
    t.check(responses.len() == 20, "every submit_sm is answered");
    let throttled = responses
        .iter()
        .filter(|e| e.int("status") == ESME_RTHROTTLED)
        .count();
    // Anything not throttled must be accepted with a message_id.
    let admitted: Vec<&str> = responses
        .iter()
        .filter(|e| e.int("status") != ESME_RTHROTTLED)
        .map(|e| t.accepted(e))
        .collect();
    let admitted = admitted.len();
    t.check(
        admitted >= 5,
        format_args!("the first second's budget is admitted ({admitted})"),
    );
    t.check(
        throttled >= 10,
        format_args!("the excess is throttled ({throttled})"),
    );
    t.assert_unbound("esme");
}

/// The script's description of a message it sent (`message` event).
fn message<'a>(t: &'a Transcript, label: &str) -> &'a Event {
    match t
        .events
        .iter()
        .find(|e| e.is("message") && e.opt_str("label") == Some(label))
    {
        Some(event) => event,
        None => panic!("no message {label:?}\n{t}"),
    }
}

/// Issue 3 through smpplib's own text handling (`smpplib.gsm.make_parts`, one
/// send_message per part): GSM-7 with every extension character and @ (0x00),
/// UCS-2 with an emoji, ~400 GSM and ~200 UCS-2 characters in UDH parts (smpplib
/// cuts blindly: inside an ESC pair, inside a surrogate pair), the long GSM text in
/// SAR parts, and a data_sm. Every part gets its own message_id; once the client
/// is gone, the store knows every id as ENROUTE and the outbox holds one row per
/// message with the whole text.
#[tokio::test]
async fn smpplib_texts_and_long_messages_are_stored_whole() {
    texts_stored_whole(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_texts_and_long_messages_are_stored_whole() {
    texts_stored_whole(true).await;
}

async fn texts_stored_whole(over_tls: bool) {
    let (tls, plain) = if over_tls {
        (Some(start_tls_broker("").await), None)
    } else {
        (None, Some(start_broker("").await))
    };
    let broker = match (&tls, &plain) {
        (Some(tls), _) => &tls.broker,
        (None, plain) => plain.as_ref().expect("a broker"),
    };
    let addr = match &tls {
        Some(_) => broker.broker.tls_addr().expect("TLS listener"),
        None => broker.addr(),
    };
    let ca = tls.as_ref().map(|t| t.cert_path.as_path());
    let t = Script::start_over("texts", addr, &[], ca).finish().await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.assert_unbound("esme");
    t.assert_closed("esme");
    common::wait_until_no_sessions(broker, "demo").await;

    // label, data_coding, esm_class, minimum parts, what the text must contain
    let expected: [(&str, i64, i64, i64, &str); 6] = [
        ("gsm7", 0, 0x00, 1, "€{}[]~^\\|@"),
        ("ucs2", 8, 0x00, 1, "😀"),
        ("long_gsm", 0, 0x40, 3, "€"),
        ("long_ucs2", 8, 0x40, 3, "😀"),
        ("long_sar", 0, 0x00, 3, "€"),
        ("data_sm", 0, 0x00, 1, "€"),
    ];
    let mut all_ids = Vec::new();
    let mut sent = Vec::new();
    for (label, data_coding, esm_class, min_parts, contains) in expected {
        let m = message(&t, label);
        let text = m.str("text");
        let parts = m.int("parts");
        t.check(
            m.int("data_coding") == data_coding
                && m.int("esm_class") == esm_class
                && parts >= min_parts
                && contains.chars().all(|c| text.contains(c)),
            format_args!(
                "{label}: data_coding {data_coding}, esm_class 0x{esm_class:02X}, at least \
                 {min_parts} parts, text with {contains:?}: {}",
                m.line
            ),
        );
        let command = if label == "data_sm" {
            "data_sm_resp"
        } else {
            "submit_sm_resp"
        };
        let responses = t.labelled(label);
        t.check(
            responses.len() as i64 == parts
                && responses.iter().all(|e| e.str("command") == command),
            format_args!("{label}: one {command} per part"),
        );
        let ids: Vec<&str> = responses.iter().map(|e| t.accepted(e)).collect();
        all_ids.extend(ids.iter().copied());
        sent.push((label, text, data_coding, ids));
    }
    // smpplib's blind cuts fall where the script meant them to.
    t.check(
        message(&t, "long_gsm")
            .str("first_part_tail")
            .ends_with("1b"),
        "part 1 of long_gsm ends with the ESC of €",
    );
    t.check(
        message(&t, "long_ucs2").str("first_part_tail") == "d83d",
        "part 1 of long_ucs2 ends with the high surrogate of 😀",
    );
    t.check(
        message(&t, "long_gsm").str("text").chars().count() >= 390
            && message(&t, "long_ucs2").str("text").chars().count() >= 190,
        "about 400 GSM and 200 UCS-2 characters",
    );
    let distinct: std::collections::BTreeSet<&str> = all_ids.iter().copied().collect();
    t.check(
        distinct.len() == all_ids.len(),
        format_args!("every part has its own message_id: {all_ids:?}"),
    );

    common::assert_stored(broker, &all_ids, ENROUTE as u8).await;
    let rows = outbox_rows(broker).await;
    let mut outbox_ids = std::collections::BTreeSet::new();
    for (label, text, data_coding, ids) in &sent {
        let row = the_row_of(&rows, ids);
        assert_eq!(&row.text, text, "{label}: the outbox holds the whole text");
        assert_eq!(row.data_coding, *data_coding, "{label}: {row:?}");
        assert_eq!(row.state, "queued", "{label}: {row:?}");
        outbox_ids.insert(row.id);
    }
    assert_eq!(outbox_ids.len(), sent.len(), "one outbox row per message");
    assert_eq!(outbox_count(broker).await, sent.len(), "and no other");
}

/// query_sm (smpplib's query_message), replace_sm and cancel_sm (written and read
/// raw: smpplib 2.2.4 has neither) on waiting messages, and their refusals.
#[tokio::test]
async fn smpplib_query_replace_and_cancel_waiting_messages() {
    let broker = start_broker("").await;
    let t = Script::run("query_cancel_replace", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");

    let kept = t.accepted(t.answer("submit kept", "submit_sm_resp", ESME_ROK));
    let doomed = t.accepted(t.answer("submit doomed", "submit_sm_resp", ESME_ROK));
    t.check(kept != doomed, "two messages, two message_ids");
    let waiting = t.queried("query kept", kept, ENROUTE);
    t.check(waiting.is_empty(), "no final_date while the message waits");
    t.answer("query unknown", "query_sm_resp", ESME_RINVMSGID);

    t.header_only("replace kept", "replace_sm_resp", ESME_ROK);
    let replaced = t
        .answer("replace kept", "replace_sm_resp", ESME_ROK)
        .str("text");
    t.check(
        t.queried("query kept after replace", kept, ENROUTE)
            .is_empty(),
        "still waiting after replace_sm",
    );

    t.header_only("cancel doomed", "cancel_sm_resp", ESME_ROK);
    let final_date = t.queried("query doomed", doomed, DELETED);
    t.check(
        final_date.len() == 16
            && final_date.ends_with("00+")
            && final_date[..13].bytes().all(|b| b.is_ascii_digit()),
        format_args!("final_date is an absolute time YYMMDDhhmmsst00+: {final_date:?}"),
    );
    t.header_only("cancel doomed again", "cancel_sm_resp", ESME_RCANCELFAIL);
    t.header_only("replace doomed", "replace_sm_resp", ESME_RREPLACEFAIL);
    t.header_only("cancel unknown", "cancel_sm_resp", ESME_RINVMSGID);
    t.header_only("replace unknown", "replace_sm_resp", ESME_RINVMSGID);

    // Cancelling part 2 of a long message cancels every part.
    let parts: Vec<&str> = t.labelled("long").iter().map(|e| t.accepted(e)).collect();
    t.check(
        parts.len() as i64 == message(&t, "long").int("parts") && parts.len() >= 3,
        "every part of the long message answered",
    );
    t.header_only("cancel long part 2", "cancel_sm_resp", ESME_ROK);
    for (i, id) in parts.iter().enumerate() {
        t.queried(&format!("query long part {}", i + 1), id, DELETED);
    }
    t.assert_unbound("esme");
    t.assert_closed("esme");
    common::wait_until_no_sessions(&broker, "demo").await;

    common::assert_stored(&broker, &[kept], ENROUTE as u8).await;
    let finals = common::assert_stored(&broker, &[doomed], DELETED as u8).await;
    assert_eq!(
        final_date,
        smpp_broker::smpp::time::format_absolute(finals[0].expect("a final time")),
        "query_sm's final_date is the stored final time"
    );
    common::assert_stored(&broker, &parts, DELETED as u8).await;
    let rows = outbox_rows(&broker).await;
    let row = the_row_of(&rows, &[kept]);
    assert_eq!(row.text, replaced, "replace_sm replaced the outbox text");
    assert_eq!(row.state, "queued", "{row:?}");
    let row = the_row_of(&rows, &[doomed]);
    assert_eq!(
        (row.state.as_str(), row.last_error.as_str()),
        ("done", "cancelled"),
        "{row:?}"
    );
    let row = the_row_of(&rows, &parts);
    assert_eq!(row.text, message(&t, "long").str("text"), "{row:?}");
    assert_eq!(
        (row.state.as_str(), row.last_error.as_str()),
        ("done", "cancelled"),
        "{row:?}"
    );
}

#[test]
fn the_event_parser_reads_what_json_dumps_writes() {
    let fields = parse_flat_json(
        r#"{"client": "esme", "event": "recv", "n": -3, "ok": true, "none": null, "s": "a\"b\\c\u00e9"}"#,
    )
    .unwrap();
    assert_eq!(fields["client"], Value::Str("esme".into()));
    assert_eq!(fields["n"], Value::Int(-3));
    assert_eq!(fields["ok"], Value::Bool(true));
    assert_eq!(fields["none"], Value::Null);
    assert_eq!(fields["s"], Value::Str("a\"b\\cé".into()));
    // python3 -c 'import json; print(json.dumps({"e": "€😀"}))'
    let fields = parse_flat_json(r#"{"e": "\u20ac\ud83d\ude00"}"#).unwrap();
    assert_eq!(fields["e"], Value::Str("€😀".into()));
    assert!(parse_flat_json(r#"{"e": "\ud83d"}"#).is_err());
    assert!(parse_flat_json(r#"{"e": "\ude00"}"#).is_err());
}

/// End to end with the sandbox: smpplib binds as transceiver, submits with
/// registered_delivery=1, gets the receipt for that message_id, and query_sm
/// agrees with it.
#[tokio::test]
async fn smpplib_gets_the_sandbox_receipt_and_query_sm_agrees() {
    sandbox_receipt(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_gets_the_sandbox_receipt_and_query_sm_agrees() {
    sandbox_receipt(true).await;
}

/// Adds a TLS listener on 127.0.0.1 with a fresh certificate in `dir`; returns the
/// certificate for the client to trust.
fn listen_tls(settings: &mut smpp_broker::Settings, dir: &Path) -> PathBuf {
    let (cert, key, _) = common::make_certificate(dir);
    settings.smpp.tls = Some(smpp_broker::config::TlsSettings {
        bind: "127.0.0.1:0".parse().unwrap(),
        cert: cert.clone(),
        key,
        generate: false,
    });
    cert
}

/// The address a scenario connects to, and the certificate it trusts over TLS.
fn endpoint(broker: &TestBroker, ca: &Option<PathBuf>) -> SocketAddr {
    match ca {
        Some(_) => broker.broker.tls_addr().expect("TLS listener"),
        None => broker.addr(),
    }
}

async fn sandbox_receipt(over_tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n\
         [[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n\
         sent_after = \"50ms\"\ndelivered_after = \"200ms\"\n\
         [[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\n",
        dir.path().join("broker.db").display()
    );
    let mut settings = smpp_broker::Settings::from_toml(&text, "test", std::iter::empty()).unwrap();
    let ca = over_tls.then(|| listen_tls(&mut settings, dir.path()));
    let broker = TestBroker {
        broker: smpp_broker::Broker::start(settings).await.unwrap(),
        dir,
    };
    let t = Script::start_over("receipt", endpoint(&broker, &ca), &[], ca.as_deref())
        .finish()
        .await;
    t.assert_completed();
    let id = t
        .accepted(t.answer("submit", "submit_sm_resp", ESME_ROK))
        .to_owned();
    let receipt = t.first("receipt", "esme");
    t.check(receipt.int("esm_class") == 4, "esm_class 0x04");
    t.check(
        receipt.str("receipted_message_id") == id,
        format_args!("the receipt names {id}: {}", receipt.line),
    );
    t.check(receipt.int("message_state") == 2, "DELIVERED");
    let short = receipt.str("short_message");
    t.check(
        short.starts_with(&format!("id:{id} sub:001 dlvrd:001 "))
            && short.contains(" stat:DELIVRD err:000 text:receipt please"),
        format_args!("Appendix B text: {short}"),
    );
    let final_date = t.queried("query after receipt", &id, 2);
    t.check(!final_date.is_empty(), "query_sm has the final date");
}

/// Long incoming messages reach python-smpplib whole: the broker cuts them into UDH
/// segments and the client puts them back together, GSM 7-bit and UCS-2 alike.
#[tokio::test]
async fn smpplib_receives_long_incoming_messages_whole() {
    long_incoming_whole(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_receives_long_incoming_messages_whole() {
    long_incoming_whole(true).await;
}

async fn long_incoming_whole(over_tls: bool) {
    use common::fake_smsgate::{FakeSmsGate, Mode};
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::upstream_broker::settings(dir.path(), &fake, "");
    let ca = over_tls.then(|| listen_tls(&mut settings, dir.path()));
    let broker = TestBroker {
        broker: smpp_broker::Broker::start(settings).await.unwrap(),
        dir,
    };
    let mut script = Script::start_over("mo", endpoint(&broker, &ca), &["2"], ca.as_deref());
    script.wait_for("listening").await;
    let gsm = "Long reply in GSM 7-bit with {braces} and 5€. ".repeat(8);
    let ucs2 = "Ответ на кириллице, длинный 😀 ".repeat(7);
    for (id, text) in [("m1", &gsm), ("m2", &ucs2)] {
        let event = serde_json::json!({"event": "sms:received", "payload": {
            "messageId": id, "message": text, "sender": "+4917611111111",
            "recipient": "+4915100000", "receivedAt": "2026-11-22T18:00:00.000Z"}});
        let status = common::post_event(broker.broker.http_addr(), "phone", &event).await;
        assert_eq!(status, 200);
    }
    let t = script.finish().await;
    t.assert_completed();
    let messages: Vec<&Event> = t.events.iter().filter(|e| e.is("mo")).collect();
    t.check(messages.len() == 2, "two whole messages");
    let octets = |e: &Event| hex_decode(e.str("octets_hex"));
    t.check(
        messages[0].int("data_coding") == 0
            && smpp_broker::text::gsm7::decode(&octets(messages[0])).as_deref()
                == Some(gsm.as_str()),
        "the GSM message whole",
    );
    t.check(
        messages[1].int("data_coding") == 8 && messages[1].str("text") == ucs2,
        "the UCS-2 message whole",
    );
    t.check(
        messages.iter().all(|m| m.str("source") == "4917611111111"),
        "from the sender",
    );
    let segments = t.count(|e| e.is("segment"));
    t.check(
        segments == 3 + 4,
        format_args!("3 GSM and 4 UCS-2 segments, not {segments}"),
    );
    t.check(
        t.events
            .iter()
            .filter(|e| e.is("segment"))
            .all(|e| match e.int("data_coding") {
                // Unpacked septets: a 6-octet UDH takes 7 of the 160.
                0 => e.int("octets") - 6 <= 153,
                _ => e.int("octets") <= 140,
            }),
        "each segment fits one SMS",
    );
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}
