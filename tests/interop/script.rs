//! An independent SMPP client's scenario script as a child process: `PROGRAM
//! SCRIPT SCENARIO HOST PORT [ARG...]`, printing one JSON object per line (an
//! event: `{"event": NAME, ...}`). The interop suites run their scripts through
//! `Client::start`, read the events as they come (`Script::wait_for`) or all of
//! them (`Script::finish`), and assert on the `Transcript`; a failed check prints
//! the whole transcript, stderr included.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use smpp_broker::Broker;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use testkit::PATIENCE;

/// The longest a scenario script may run before it is killed.
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------

/// One line the script printed.
#[derive(Debug, Clone)]
pub struct Event {
    /// The line as printed (with a note in front when it is not a JSON object).
    pub line: String,
    /// Its fields; none when the line is not a JSON object.
    pub fields: Map<String, Value>,
}

impl Event {
    /// A line that is not a JSON object is kept, marked, and matched by nothing.
    pub fn parse(line: &str) -> Event {
        match serde_json::from_str(line) {
            Ok(Value::Object(fields)) => Event {
                line: line.to_string(),
                fields,
            },
            Ok(_) => Event::unparsed(line, "not a JSON object"),
            Err(err) => Event::unparsed(line, err),
        }
    }

    fn unparsed(line: &str, why: impl fmt::Display) -> Event {
        Event {
            line: format!("(unparsed: {why}) {line}"),
            fields: Map::new(),
        }
    }

    /// The `event` field ("" when there is none).
    pub fn name(&self) -> &str {
        self.opt_str("event").unwrap_or("")
    }

    pub fn is(&self, name: &str) -> bool {
        self.name() == name
    }

    pub fn opt_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    pub fn opt_int(&self, key: &str) -> Option<i64> {
        self.fields.get(key).and_then(Value::as_i64)
    }

    pub fn str(&self, key: &str) -> &str {
        self.opt_str(key)
            .unwrap_or_else(|| panic!("event has no string {key:?}: {}", self.line))
    }

    pub fn int(&self, key: &str) -> i64 {
        self.opt_int(key)
            .unwrap_or_else(|| panic!("event has no integer {key:?}: {}", self.line))
    }
}

// ---------------------------------------------------------------------------------
// Starting a script
// ---------------------------------------------------------------------------------

/// How a suite runs its client's scenarios.
pub struct Client {
    /// Names the client in a transcript's first line ("smpplib", "Net::SMPP 1.19").
    pub name: String,
    /// The interpreter, found on PATH.
    pub program: &'static str,
    /// The script, relative to the crate's root.
    pub script: &'static str,
    /// Variables set for the script, on top of the inherited environment.
    pub env: Vec<(&'static str, OsString)>,
    /// When set in the tests' environment, `finish` prints every transcript to
    /// stderr.
    pub print_var: &'static str,
    /// Whether a completed script must have printed nothing on stderr.
    pub quiet_stderr: bool,
}

impl Client {
    fn script_path(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(self.script)
    }

    /// Starts `PROGRAM SCRIPT scenario HOST PORT args...` against `addr`; the script
    /// is killed at `SCRIPT_LIMIT` or when the `Script` is dropped.
    pub fn start(&self, scenario: &str, addr: SocketAddr, args: &[&str]) -> Script {
        let script = self.script_path();
        let mut child = Command::new(self.program)
            .arg(&script)
            .arg(scenario)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {} {}: {err}", self.program, script.display())
            });
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text).await;
            String::from_utf8_lossy(&text).into_owned()
        });
        Script {
            transcript: Transcript {
                client: self.name.clone(),
                scenario: scenario.to_string(),
                events: Vec::new(),
                stderr: String::new(),
                exit: None,
                killed: false,
                quiet_stderr: self.quiet_stderr,
            },
            print_var: self.print_var,
            child,
            stdout,
            stderr: Some(stderr),
            deadline: Instant::now() + SCRIPT_LIMIT,
            timed_out: false,
        }
    }

    /// Runs a scenario to its end.
    pub async fn run(&self, scenario: &str, addr: SocketAddr, args: &[&str]) -> Transcript {
        self.start(scenario, addr, args).finish().await
    }
}

// ---------------------------------------------------------------------------------
// A running script
// ---------------------------------------------------------------------------------

/// A running scenario script; what it printed so far is in `events()`.
pub struct Script {
    /// Filled in as the script runs; exit and stderr once it ends.
    transcript: Transcript,
    print_var: &'static str,
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    deadline: Instant,
    timed_out: bool,
}

impl Script {
    /// The events read so far.
    pub fn events(&self) -> &[Event] {
        &self.transcript.events
    }

    /// The next line, or None at the end of the output or at the deadline.
    async fn next_event(&mut self) -> Option<Event> {
        let mut line = Vec::new();
        match tokio::time::timeout_at(self.deadline, self.stdout.read_until(b'\n', &mut line)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(_)) => {
                let line = String::from_utf8_lossy(&line);
                let event = Event::parse(line.trim_end_matches(['\n', '\r']));
                self.transcript.events.push(event.clone());
                Some(event)
            }
            Err(_) => {
                self.timed_out = true;
                None
            }
        }
    }

    /// Reads events until one named `name`; fails with the transcript when the
    /// script ends or runs out of time first.
    pub async fn wait_for(&mut self, name: &str) -> Event {
        while let Some(event) = self.next_event().await {
            if event.is(name) {
                return event;
            }
        }
        let transcript = self.end().await;
        if self.timed_out {
            panic!("no {name:?} event within {SCRIPT_LIMIT:?}\n{transcript}");
        }
        panic!("the script ended before a {name:?} event\n{transcript}");
    }

    /// Reads the rest and waits for the exit (killing the script at the deadline).
    pub async fn finish(mut self) -> Transcript {
        while self.next_event().await.is_some() {}
        let transcript = self.end().await;
        if std::env::var_os(self.print_var).is_some() {
            eprintln!("{transcript}");
        }
        transcript
    }

    /// Once the script says it is `listening`, shuts `broker` down while the script
    /// runs on; returns the transcript and how long the shutdown took, having
    /// checked that it completed within PATIENCE.
    pub async fn finish_under_shutdown(mut self, broker: Broker) -> (Transcript, Duration) {
        self.wait_for("listening").await;
        let started = Instant::now();
        let shutdown = tokio::spawn(broker.shutdown());
        let transcript = self.finish().await;
        let finished = tokio::time::timeout(PATIENCE, shutdown).await;
        let took = started.elapsed();
        transcript.check(matches!(finished, Ok(Ok(()))), "Broker::shutdown completes");
        (transcript, took)
    }

    /// Waits for the exit until the deadline, then kills; collects stderr.
    async fn end(&mut self) -> Transcript {
        match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(Ok(status)) => self.transcript.exit = status.code(),
            _ => {
                let _ = self.child.kill().await;
                self.transcript.killed = true;
            }
        }
        if let Some(task) = self.stderr.take() {
            self.transcript.stderr = tokio::time::timeout(PATIENCE, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
        }
        self.transcript.clone()
    }
}

// ---------------------------------------------------------------------------------
// What a script printed
// ---------------------------------------------------------------------------------

/// What a finished script printed, and how it ended (exit None: killed, by us at
/// the time limit when `killed`).
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The client's name, as `Client::name`.
    pub client: String,
    pub scenario: String,
    /// Every line of stdout, in order.
    pub events: Vec<Event>,
    pub stderr: String,
    /// The exit code; None when a signal ended the script.
    pub exit: Option<i32>,
    /// Whether we killed the script at `SCRIPT_LIMIT`.
    pub killed: bool,
    /// Whether `assert_completed` requires an empty stderr.
    quiet_stderr: bool,
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- {} scenario {:?}: exit {:?}{} ---",
            self.client,
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
    pub fn check(&self, ok: bool, what: impl fmt::Display) {
        assert!(ok, "{what}\n{self}");
    }

    /// The scenario ran to its end: exit 0 after a "done" event; and, for a client
    /// started with `quiet_stderr`, nothing on stderr.
    pub fn assert_completed(&self) -> &Self {
        self.check(
            self.exit == Some(0) && self.events.iter().any(|e| e.is("done")),
            format_args!("the {} script did not complete", self.client),
        );
        if self.quiet_stderr {
            self.check(
                self.stderr.trim().is_empty(),
                format_args!("{} printed nothing on stderr", self.client),
            );
        }
        self
    }

    /// Every event named `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.is(name)).collect()
    }

    /// The first event named `name`.
    pub fn first(&self, name: &str) -> &Event {
        match self.events.iter().find(|e| e.is(name)) {
            Some(event) => event,
            None => panic!("no {name:?} event\n{self}"),
        }
    }

    /// How many events satisfy `predicate`.
    pub fn count(&self, predicate: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| predicate(e)).count()
    }

    /// The events named `name` whose `label` is `label`, in order.
    pub fn labelled(&self, name: &str, label: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.is(name) && e.opt_str("label") == Some(label))
            .collect()
    }

    /// The one event of `found` (`what` says what they are).
    pub fn only<'a>(&self, found: Vec<&'a Event>, what: impl fmt::Display) -> &'a Event {
        self.check(
            found.len() == 1,
            format_args!("exactly one {what}, got {}", found.len()),
        );
        found[0]
    }

    /// The script's description of the message it labelled `label`.
    pub fn message(&self, label: &str) -> &Event {
        match self.labelled("message", label).first() {
            Some(event) => event,
            None => panic!("no message {label:?}\n{self}"),
        }
    }

    /// The script's description of the message it labelled `label`, checked to say
    /// `data_coding`, `esm_class`, a number of parts in `parts`, and a text with
    /// every character of `has`.
    pub fn sent(
        &self,
        label: &str,
        data_coding: i64,
        esm_class: i64,
        parts: impl RangeBounds<i64> + fmt::Debug,
        has: &str,
    ) -> &Event {
        let m = self.message(label);
        let text = m.str("text");
        self.check(
            m.int("data_coding") == data_coding
                && m.int("esm_class") == esm_class
                && parts.contains(&m.int("parts"))
                && has.chars().all(|c| text.contains(c)),
            format_args!(
                "{label}: data_coding {data_coding}, esm_class 0x{esm_class:02X}, parts \
                 {parts:?}, a text with {has:?}: {}",
                m.line
            ),
        );
        m
    }

    /// `event` (a response to `what`) is `command` with `status`.
    pub fn check_answer(&self, event: &Event, what: &str, command: &str, status: i64) {
        self.check(
            event.str("command") == command && event.int("status") == status,
            format_args!(
                "{what:?} is answered by {command} with status 0x{status:02X}: {}",
                event.line
            ),
        );
    }

    /// The message_id of an accepted response: 1 to 20 decimal digits.
    pub fn message_id<'a>(&self, event: &'a Event) -> &'a str {
        let id = event.opt_str("message_id").unwrap_or("");
        self.check(
            (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()),
            format_args!("a decimal message_id of 1 to 20 digits: {}", event.line),
        );
        id
    }

    /// `bound` (a `bound` event) is a bind_<kind>_resp with status 0 from the
    /// broker's system_id, with sc_interface_version 0x34.
    pub fn check_bound(&self, bound: &Event, kind: &str) {
        self.check(
            bound.str("command") == format!("bind_{kind}_resp")
                && bound.int("status") == 0
                && bound.str("system_id") == "smpp-broker"
                && bound.opt_int("sc_interface_version") == Some(0x34),
            format_args!(
                "bound as {kind} with system_id smpp-broker and sc_interface_version 0x34: {}",
                bound.line
            ),
        );
    }
}

/// The command that answers the message labelled `label` in a "texts"
/// scenario: the scripts send the one labelled "data_sm" as data_sm, every
/// other as submit_sm.
pub fn response_to(label: &str) -> &'static str {
    if label == "data_sm" {
        "data_sm_resp"
    } else {
        "submit_sm_resp"
    }
}
