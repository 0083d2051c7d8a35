#!/usr/bin/env python3
"""python-smpplib 2.2.4 as a real ESME against the broker, for tests/interop_smpplib.rs.

Usage: smpplib_client.py SCENARIO HOST PORT [ARG...]

Every PDU smpplib sends or reads, and every scenario step, is printed on stdout
as one flat JSON object per line ({"event": "recv", "command": ..., ...}). The
Rust test asserts on those lines, so this script checks nothing itself: exit 0
means the scenario ran to its end, 1 an unexpected exception (traceback on
stderr), 2 a usage error.

Raw PDUs (things smpplib refuses to send, or cannot express) are written with
struct.pack straight to the client's socket (`client._socket`).
"""

import json
import socket
import ssl
import struct
import sys
import time
import traceback

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

try:
    from importlib.metadata import version as _dist_version

    SMPPLIB_VERSION = _dist_version("smpplib")
except Exception:  # pragma: no cover - metadata missing
    SMPPLIB_VERSION = "unknown"

STARTED = time.monotonic()

# submit_sm addresses, and the submit_sm command_id for hand-made headers.
SOURCE = "4915112345"
DESTINATION = "4917612345"
SUBMIT_SM = 0x00000004


def emit(event, **fields):
    """Prints one event as a JSON line. Values are str, int, bool or None."""
    fields["event"] = event
    fields["t_ms"] = int((time.monotonic() - STARTED) * 1000)
    print(json.dumps(fields, sort_keys=True), flush=True)


def text(value):
    """smpplib parses C-octet strings as bytes."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


class TracingClient(smpplib.client.Client):
    """smpplib's Client, unchanged, but every PDU in and out becomes an event."""

    def __init__(self, name, host, port, **kwargs):
        kwargs.setdefault("timeout", 10)
        # Strict, as smpplib 2.2.4 is by default: an unknown TLV from the broker
        # would raise. Passing it explicitly also silences the DeprecationWarning.
        kwargs.setdefault("allow_unknown_opt_params", False)
        super().__init__(host, port, **kwargs)
        self.name = name
        self.server_enquire_links = 0

    def send_pdu(self, p):
        emit("send", client=self.name, command=p.command, sequence=p.sequence, status=p.status)
        return super().send_pdu(p)

    def read_pdu(self):
        p = super().read_pdu()
        emit("recv", client=self.name, command=p.command, sequence=p.sequence, status=p.status)
        return p

    def _enquire_link_received(self, pdu):
        # smpplib's own answer (enquire_link_resp with the same sequence), counted.
        self.server_enquire_links += 1
        return super()._enquire_link_received(pdu)


class HostnameContext:
    """smpplib 2.2.4 calls ssl_context.wrap_socket(sock) without server_hostname,
    which a verifying context (check_hostname=True) refuses. This wrapper adds it."""

    def __init__(self, context, hostname):
        self.context = context
        self.hostname = hostname

    def wrap_socket(self, sock, **kwargs):
        kwargs.setdefault("server_hostname", self.hostname)
        return self.context.wrap_socket(sock, **kwargs)


def connect(name, host, port, **kwargs):
    client = TracingClient(name, host, port, **kwargs)
    client.connect()
    emit("connected", client=name)
    return client


def bind(client, kind, system_id, password):
    """Binds with smpplib's own bind_* (which reads the very next PDU as the
    response and raises PDUError on an error status). Returns the response or None."""
    try:
        resp = getattr(client, "bind_" + kind)(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as e:
        emit("bind_failed", client=client.name, kind=kind, status=e.args[1], message=str(e.args[0]))
        return None
    emit(
        "bound",
        client=client.name,
        kind=kind,
        command=resp.command,
        sequence=resp.sequence,
        status=resp.status,
        system_id=text(resp.system_id),
        sc_interface_version=resp.sc_interface_version,
    )
    return resp


def send_raw(client, data, what):
    client._socket.sendall(data)
    emit("send_raw", client=client.name, what=what, length=len(data))


def raw_header(command_length, command_id, status, sequence):
    return struct.pack(">LLLL", command_length, command_id, status, sequence)


def await_response(client, what, request_sequence):
    """Reads until a PDU that is not the broker's own enquire_link comes (those
    are answered as smpplib's read_once does), and reports it as the response."""
    while True:
        p = client.read_pdu()
        if p.command == "enquire_link":
            client._enquire_link_received(p)
            continue
        emit(
            "response",
            client=client.name,
            request=what,
            request_sequence=request_sequence,
            command=p.command,
            sequence=p.sequence,
            status=p.status,
        )
        return p


def request(client, command, **kwargs):
    """Sends a request through smpplib (its state checks apply) and reads the response."""
    p = smpplib.smpp.make_pdu(command, client=client, **kwargs)
    client.send_pdu(p)
    return await_response(client, command, p.sequence)


def raw_request(client, command, **kwargs):
    """Builds a request with smpplib but writes it to the socket directly,
    bypassing smpplib's client-side state checks."""
    p = smpplib.smpp.make_pdu(command, client=client, **kwargs)
    send_raw(client, p.generate(), command)
    return await_response(client, command, p.sequence)


def submit_kwargs(message=b"hello from smpplib"):
    return dict(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr=SOURCE,
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=DESTINATION,
        short_message=message,
    )


def submit(client, message=b"hello from smpplib"):
    """submit_sm the way applications send with smpplib: send_message, then read."""
    p = client.send_message(**submit_kwargs(message))
    return await_response(client, "submit_sm", p.sequence)


def unbind(client):
    """smpplib's own unbind: sends unbind and reads the very next PDU."""
    resp = client.unbind()
    emit("unbound", client=client.name, command=resp.command, sequence=resp.sequence, status=resp.status)
    return resp


def expect_closed(client, limit=10.0):
    """Reads until the broker closes the connection, reporting what came first."""
    client._socket.settimeout(limit)
    start = time.monotonic()
    try:
        while True:
            client.read_pdu()
    except smpplib.exceptions.ConnectionError:
        emit("closed", client=client.name, after_ms=int((time.monotonic() - start) * 1000))
    except socket.timeout:
        emit("still_open", client=client.name, after_ms=int((time.monotonic() - start) * 1000))
    finally:
        client.disconnect()


def listen_until_closed(client, limit=10.0):
    """smpplib's own read loop (read_once, as listen() does) until the connection
    closes: it answers enquire_link and deliver_sm, and ignores an unbind."""
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit:
            client.read_once()
        emit("still_open", client=client.name, after_ms=int((time.monotonic() - start) * 1000))
    except smpplib.exceptions.ConnectionError:
        emit("closed", client=client.name, after_ms=int((time.monotonic() - start) * 1000))
    finally:
        client.disconnect()


# --- scenarios ------------------------------------------------------------------


def scenario_bind(host, port, kind):
    """bind_<kind> as demo, a submit (or a refused one for a receiver), enquire_link, unbind."""
    client = connect("esme", host, port)
    bind(client, kind, "demo", "demo1234")
    if kind == "receiver":
        # smpplib will not send submit_sm while bound RX; write it directly.
        raw_request(client, "submit_sm", **submit_kwargs())
    else:
        submit(client)
    request(client, "enquire_link")
    unbind(client)
    expect_closed(client)


def scenario_bind_error(host, port, kind, system_id, password):
    client = connect("esme", host, port)
    bind(client, kind, system_id, password)
    expect_closed(client)


def scenario_too_many_sessions(host, port):
    first = connect("first", host, port)
    bind(first, "transceiver", "single", "single")
    second = connect("second", host, port)
    bind(second, "receiver", "single", "single")
    expect_closed(second)
    # Once the first session is gone its slot is free again.
    unbind(first)
    expect_closed(first)
    third = connect("third", host, port)
    bind(third, "receiver", "single", "single")
    unbind(third)
    expect_closed(third)


def scenario_bind_twice(host, port):
    client = connect("esme", host, port)
    bind(client, "transmitter", "demo", "demo1234")
    # smpplib refuses to send a bind while bound: write the PDU it builds directly.
    raw_request(client, "bind_receiver", system_id="demo", password="demo1234")
    request(client, "enquire_link")
    submit(client)
    unbind(client)
    expect_closed(client)


def scenario_submit_before_bind(host, port):
    client = connect("esme", host, port)
    # Unbound, smpplib refuses submit_sm and even enquire_link: write them directly.
    raw_request(client, "submit_sm", **submit_kwargs(b"too early"))
    raw_request(client, "enquire_link")
    bind(client, "transmitter", "demo", "demo1234")
    unbind(client)
    expect_closed(client)


def scenario_unknown_command(host, port):
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    send_raw(client, raw_header(16, 0x00000999, 0, 77), "command_id 0x00000999")
    await_response(client, "unknown", 77)
    request(client, "enquire_link")
    unbind(client)
    expect_closed(client)


def scenario_truncated_body(host, port):
    client = connect("esme", host, port)
    bind(client, "transmitter", "demo", "demo1234")
    p = smpplib.smpp.make_pdu("submit_sm", client=client, **submit_kwargs())
    full = p.generate()
    cut = struct.pack(">L", 24) + full[4:24]
    send_raw(client, cut, "submit_sm cut to 24 bytes")
    await_response(client, "truncated submit_sm", p.sequence)
    request(client, "enquire_link")
    unbind(client)
    expect_closed(client)


def scenario_oversized_length(host, port):
    client = connect("esme", host, port)
    bind(client, "transmitter", "demo", "demo1234")
    send_raw(client, raw_header(0x00100000, SUBMIT_SM, 0, 9), "command_length 0x00100000")
    await_response(client, "oversized", 9)
    expect_closed(client)


def scenario_enquire_link(host, port, count):
    """Our enquire_link is answered; then smpplib's own read loop answers the
    broker's enquire_links `count` times; then ours is answered again."""
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    request(client, "enquire_link")
    start = time.monotonic()
    while client.server_enquire_links < int(count) and time.monotonic() - start < 20:
        client.read_once()
    request(client, "enquire_link")
    # Not smpplib's unbind(): it takes the very next PDU as the response, and with
    # the broker pinging every few hundred ms that could be a ping on a slow machine.
    request(client, "unbind")
    expect_closed(client)


def scenario_inactivity(host, port):
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    listen_until_closed(client)


def scenario_server_unbind(host, port):
    """Bound, then smpplib's read loop while the test shuts the broker down."""
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    emit("listening", client=client.name)
    listen_until_closed(client, limit=30.0)


def scenario_tls(host, port, cert):
    # First a context that does not trust the broker's certificate: refused.
    untrusted = TracingClient(
        "untrusted", host, port, ssl_context=HostnameContext(ssl.create_default_context(), "localhost")
    )
    try:
        untrusted.connect()
        emit("connected", client="untrusted")
        untrusted.disconnect()
    except smpplib.exceptions.ConnectionError as e:
        emit("connect_failed", client="untrusted", message=str(e))
        # Never connected: close the socket without smpplib's "bound state" warning.
        untrusted._socket.close()
        untrusted._socket = None
    context = ssl.create_default_context(cafile=cert)
    client = connect("esme", host, port, ssl_context=HostnameContext(context, "localhost"))
    emit("tls", client="esme", version=client._socket.version(), peer_cn=_peer_cn(client._socket))
    bind(client, "transceiver", "demo", "demo1234")
    request(client, "enquire_link")
    submit(client)
    unbind(client)
    expect_closed(client)


def _peer_cn(sock):
    for rdn in sock.getpeercert().get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def scenario_throttle(host, port, count):
    client = connect("esme", host, port)
    bind(client, "transmitter", "slow", "slow")
    for i in range(int(count)):
        submit(client, ("message %d" % i).encode())
    unbind(client)
    expect_closed(client)


SCENARIOS = {
    "bind": scenario_bind,
    "bind_error": scenario_bind_error,
    "too_many_sessions": scenario_too_many_sessions,
    "bind_twice": scenario_bind_twice,
    "submit_before_bind": scenario_submit_before_bind,
    "unknown_command": scenario_unknown_command,
    "truncated_body": scenario_truncated_body,
    "oversized_length": scenario_oversized_length,
    "enquire_link": scenario_enquire_link,
    "inactivity": scenario_inactivity,
    "server_unbind": scenario_server_unbind,
    "tls": scenario_tls,
    "throttle": scenario_throttle,
}


def main(argv):
    if len(argv) < 4 or argv[1] not in SCENARIOS:
        sys.stderr.write(__doc__)
        sys.stderr.write("scenarios: %s\n" % ", ".join(sorted(SCENARIOS)))
        return 2
    scenario, host, port, args = argv[1], argv[2], int(argv[3]), argv[4:]
    emit("start", scenario=scenario, smpplib=SMPPLIB_VERSION, python=sys.version.split()[0])
    try:
        SCENARIOS[scenario](host, port, *args)
    except Exception as e:
        emit("exception", type=type(e).__name__, message=str(e))
        traceback.print_exc()
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
