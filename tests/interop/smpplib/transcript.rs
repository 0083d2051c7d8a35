//! What the smpplib script printed: the checks on its transcript, and how its
//! JSON lines are read.

use super::*;

/// What the smpplib script's transcript must show.
pub(super) trait SmpplibTranscript {
    /// The first `name` event of `client` (the script names each connection).
    fn find_of(&self, name: &str, client: &str) -> Option<&Event>;

    /// The first `name` event of `client`.
    fn first_of(&self, name: &str, client: &str) -> &Event;

    /// Checks that each response echoes its request's sequence number.
    fn echoed<'a>(&self, found: Vec<&'a Event>) -> Vec<&'a Event>;

    /// All responses to requests named `request`, each checked to echo the
    /// request's sequence number.
    fn responses(&self, request: &str) -> Vec<&Event>;

    /// The single response to `request`, checked for command and status.
    fn response(&self, request: &str, command: &str, status: i64) -> &Event;

    /// The responses to requests the script labelled `label`, in order, each
    /// checked to echo its request's sequence number.
    fn responses_labelled(&self, label: &str) -> Vec<&Event>;

    /// The single response labelled `label`, checked for command and status.
    fn answer(&self, label: &str, command: &str, status: i64) -> &Event;

    /// A submit_sm_resp or data_sm_resp with status 0 and a message_id of 1 to 20
    /// decimal digits; returns the message_id.
    fn accepted<'a>(&self, event: &'a Event) -> &'a str;

    /// A query_sm_resp for `message_id` saying `state`, error_code 0; returns
    /// its final_date.
    fn queried(&self, label: &str, message_id: &str, state: i64) -> &str;

    /// A header-only cancel_sm_resp or replace_sm_resp (read raw by the script).
    fn header_only(&self, label: &str, command: &str, status: i64);

    /// A successful smpplib bind_* by `client`.
    fn assert_bound(&self, client: &str, kind: &str);

    /// smpplib's bind_* raised PDUError with `status`.
    fn assert_bind_failed(&self, client: &str, status: i64);

    /// smpplib's unbind() got unbind_resp with status 0.
    fn assert_unbound(&self, client: &str);

    /// The broker closed `client`'s connection (read saw EOF, no timeout).
    fn assert_closed(&self, client: &str) -> &Event;

    /// smpplib's own enquire_link (through its state checks) was answered.
    fn assert_enquire_links_answered(&self);
}

impl SmpplibTranscript for Transcript {
    fn find_of(&self, name: &str, client: &str) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| e.is(name) && e.opt_str("client") == Some(client))
    }

    fn first_of(&self, name: &str, client: &str) -> &Event {
        match self.find_of(name, client) {
            Some(event) => event,
            None => panic!("no {name:?} event for client {client:?}\n{self}"),
        }
    }

    fn echoed<'a>(&self, found: Vec<&'a Event>) -> Vec<&'a Event> {
        for event in &found {
            self.check(
                event.int("sequence") == event.int("request_sequence"),
                format_args!("the response echoes its request's sequence: {}", event.line),
            );
        }
        found
    }

    fn responses(&self, request: &str) -> Vec<&Event> {
        let found = self
            .all("response")
            .into_iter()
            .filter(|e| e.opt_str("request") == Some(request))
            .collect();
        self.echoed(found)
    }

    fn response(&self, request: &str, command: &str, status: i64) -> &Event {
        let event = self.only(
            self.responses(request),
            format_args!("response to {request}"),
        );
        self.check_answer(event, request, command, status);
        event
    }

    fn responses_labelled(&self, label: &str) -> Vec<&Event> {
        self.echoed(self.labelled("response", label))
    }

    fn answer(&self, label: &str, command: &str, status: i64) -> &Event {
        let found = self.responses_labelled(label);
        let event = self.only(found, format_args!("response labelled {label:?}"));
        self.check_answer(event, label, command, status);
        event
    }

    fn accepted<'a>(&self, event: &'a Event) -> &'a str {
        self.check(
            event.int("status") == ESME_ROK,
            format_args!("accepted: {}", event.line),
        );
        self.message_id(event)
    }

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

    fn header_only(&self, label: &str, command: &str, status: i64) {
        let event = self.answer(label, command, status);
        self.check(
            event.opt_int("body_length") == Some(0),
            format_args!("{command} has no body: {}", event.line),
        );
    }

    fn assert_bound(&self, client: &str, kind: &str) {
        self.check_bound(self.first_of("bound", client), kind);
    }

    fn assert_bind_failed(&self, client: &str, status: i64) {
        self.check(
            self.find_of("bound", client).is_none(),
            format_args!("{client} must not bind"),
        );
        let failed = self.first_of("bind_failed", client);
        self.check(
            failed.int("status") == status,
            format_args!("{client}'s bind fails with 0x{status:02X}: {}", failed.line),
        );
    }

    fn assert_unbound(&self, client: &str) {
        let unbound = self.first_of("unbound", client);
        self.check(
            unbound.str("command") == "unbind_resp" && unbound.int("status") == ESME_ROK,
            format_args!(
                "{client}'s unbind is answered by unbind_resp: {}",
                unbound.line
            ),
        );
    }

    fn assert_closed(&self, client: &str) -> &Event {
        self.check(
            self.find_of("still_open", client).is_none(),
            format_args!("the broker closes {client}'s connection"),
        );
        self.first_of("closed", client)
    }

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

/// The events are read with serde_json from what the script's json.dumps writes:
/// ASCII only, other characters as \uXXXX and those beyond the BMP as surrogate
/// pairs. Every value comes back as it was.
#[test]
fn events_read_what_json_dumps_writes() {
    let text = "a\"b\\c\u{e9}\n\t€{}[]~^|@ Привет 你好 😀 \u{0}\u{7f}";
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             text = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps({'event': 'recv', 'client': 'esme', 'n': -3, 'big': 2**40, \
             'ok': True, 'none': None, 'text': text}, sort_keys=True))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to python3");
    }
    let output = python.wait_with_output().expect("python3 ends");
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout).expect("UTF-8");
    let line = line.trim_end();
    assert!(
        line.is_ascii() && line.contains(r"\ud83d\ude00") && line.contains(r"\u0000"),
        "json.dumps escapes: {line}"
    );
    let event = Event::parse(line);
    assert!(event.is("recv"), "{event:?}");
    assert_eq!(event.line, line);
    assert_eq!(event.str("client"), "esme");
    assert_eq!(event.int("n"), -3);
    assert_eq!(event.int("big"), 1 << 40);
    assert_eq!(event.fields["ok"], serde_json::Value::Bool(true));
    assert_eq!(event.fields["none"], serde_json::Value::Null);
    assert_eq!(event.str("text"), text);
    assert_eq!(event.opt_int("text"), None, "a string is no integer");

    // A line that is no JSON object is kept, marked, and matched by nothing.
    let other = Event::parse("Traceback (most recent call last):");
    assert!(
        other.fields.is_empty() && other.name().is_empty(),
        "{other:?}"
    );
    assert!(other.line.ends_with(" Traceback (most recent call last):"));
    assert!(other.line.starts_with("(unparsed: "));
}
