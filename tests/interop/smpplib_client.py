#!/usr/bin/env python3
"""python-smpplib 2.2.4 as a real ESME against the broker, for tests/interop/smpplib.rs.

Usage: smpplib_client.py SCENARIO HOST PORT [ARG...]

Every PDU smpplib sends or reads, and every scenario step, is printed on stdout
as one flat JSON object per line ({"event": "recv", "command": ..., ...}). The
Rust test asserts on those lines, so this script checks nothing itself: exit 0
means the scenario ran to its end, 1 an unexpected exception (traceback on
stderr), 2 a usage error.

Raw PDUs (things smpplib refuses to send, or cannot express) are written with
struct.pack straight to the client's socket (`client._socket`). smpplib 2.2.4 has
no cancel_sm or replace_sm at all, and its read_pdu raises UnknownCommandError on
their responses (its command factory lacks them), so those exchanges are written
and read raw (`raw_exchange`).
"""

import binascii
import json
import os
import random
import socket
import ssl
import struct
import sys
import time
import traceback

import smpplib.client
import smpplib.consts
import smpplib.command_codes
import smpplib.exceptions
import smpplib.gsm
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
CANCEL_SM = 0x00000008
REPLACE_SM = 0x00000007
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015

# Texts an application sends (issue 3). The GSM text uses only characters
# smpplib's table maps correctly (not its 0x5F backtick, GSM's §), every
# extension character, and @ (0x00, a NUL inside short_message).
GSM_TEXT = u"Price: 5€ {x} [y] ~ ^ \\ | @ £$¥ èé ΔΩ ¤¡¿ _ Äö"
# Not GSM: make_parts falls back to UCS-2 (data_coding 8); the emoji is a surrogate pair.
UCS2_TEXT = u"Grüße 😀 Привет 你好 €"
REPLACED_TEXT = u"replaced: 5€ [sic] @ ~"
DATA_SM_TEXT = u"data_sm in message_payload: 5€ [ok] @home"
_FOX = u"The quick brown fox jumps over the lazy dog 0123456789. "
# ~400 GSM characters. smpplib cuts every 153 octets blindly: the euro sign's ESC
# is octet 152, the last of part 1, and its 0x65 opens part 2.
LONG_GSM_TEXT = (_FOX * 3)[:152] + u"€" + (u" {braces} [brackets] ~tilde^ " + _FOX * 5)[:246]
# ~200 UCS-2 characters. smpplib cuts every 134 octets (67 UTF-16 units): the
# emoji's high surrogate is unit 66, the last of part 1; its low one opens part 2.
_PRIVET = u"Привет, мир! "
LONG_UCS2_TEXT = (_PRIVET * 6)[:66] + u"😀" + (u"Grüße aus Köln 你好 🎉 " * 8)[:130]


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
    # SMPPLIB_TLS_CA: every scenario over TLS, trusting that certificate.
    ca = os.environ.get("SMPPLIB_TLS_CA")
    if ca and "ssl_context" not in kwargs:
        kwargs["ssl_context"] = HostnameContext(ssl.create_default_context(cafile=ca), "localhost")
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


# Response fields reported when the PDU has them (C-octet strings as text).
RESPONSE_FIELDS = ("message_id", "message_state", "error_code", "final_date")


def await_response(client, what, request_sequence, **extra):
    """Reads until a PDU that is not the broker's own enquire_link comes (those
    are answered as smpplib's read_once does), and reports it as the response,
    with `extra` (a label, a part number) and the body fields it has."""
    while True:
        p = client.read_pdu()
        if p.command == "enquire_link":
            client._enquire_link_received(p)
            continue
        fields = dict(extra)
        for name in RESPONSE_FIELDS:
            value = getattr(p, name, None)
            if value is not None:
                fields[name] = text(value)
        emit(
            "response",
            client=client.name,
            request=what,
            request_sequence=request_sequence,
            command=p.command,
            sequence=p.sequence,
            status=p.status,
            **fields
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


def submit_kwargs(message=b"hello from smpplib", destination=DESTINATION):
    return dict(
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr=SOURCE,
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=destination,
        short_message=message,
    )


def submit(client, message=b"hello from smpplib", **extra):
    """submit_sm the way applications send with smpplib: send_message, then read."""
    p = client.send_message(**submit_kwargs(message))
    return await_response(client, "submit_sm", p.sequence, **extra)


def submit_text(client, label, text_, destination=DESTINATION, use_udhi=True, receipt_on_last_part=False):
    """Sends `text_` the way smpplib's README does: smpplib.gsm.make_parts (GSM,
    else UCS-2; parts with a UDH, or with SAR TLVs when use_udhi is False), one
    send_message per part. With receipt_on_last_part, only the last part asks for
    a receipt (registered_delivery 1), as Jasmin 0.11 sends long messages. Returns
    the submit_sm_resp of every part."""
    parts, encoding, esm_class = smpplib.gsm.make_parts(text_, use_udhi=use_udhi)
    emit(
        "message",
        client=client.name,
        label=label,
        text=text_,
        parts=len(parts),
        data_coding=encoding,
        esm_class=esm_class,
        # Where the blind cut fell: the last two octets of part 1, in hex.
        first_part_tail=binascii.hexlify(parts[0][-2:]).decode() if len(parts) > 1 else None,
    )
    reference = random.randint(0, 0xFFFF)
    responses = []
    for seq, part in enumerate(parts, start=1):
        kwargs = submit_kwargs(part, destination)
        kwargs.update(data_coding=encoding, esm_class=esm_class)
        if len(parts) > 1 and not use_udhi:
            kwargs.update(sar_msg_ref_num=reference, sar_total_segments=len(parts), sar_segment_seqnum=seq)
        if receipt_on_last_part and seq == len(parts):
            kwargs.update(registered_delivery=1)
        p = client.send_message(**kwargs)
        responses.append(await_response(client, "submit_sm", p.sequence, label=label, part=seq))
    return responses


def message_id_of(resp):
    return text(resp.message_id)


def query(client, label, message_id, source=SOURCE):
    """query_sm through smpplib's own query_message."""
    p = client.query_message(
        message_id=message_id,
        source_addr_ton=smpplib.consts.SMPP_TON_INTL,
        source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        source_addr=source,
    )
    return await_response(client, "query_sm", p.sequence, label=label)


def c_octets(value):
    return value.encode("latin-1") + b"\0"


def read_raw_pdu(client):
    """One PDU read straight from the socket: (command_id, status, sequence, body).
    Used where smpplib's read_pdu would raise on a response it does not know."""
    header = client._recv_exact(16)
    length, command_id, status, sequence = struct.unpack(">LLLL", header)
    body = client._recv_exact(length - 16) if length > 16 else b""
    try:
        command = smpplib.command_codes.get_command_name(command_id)
    except smpplib.exceptions.UnknownCommandError:
        command = "0x%08X" % command_id
    emit("recv", client=client.name, command=command, sequence=sequence, status=status, raw=True)
    return command_id, command, status, sequence, body


def raw_exchange(client, what, command_id, body, **extra):
    """Writes a request PDU built by hand and reads its response raw, answering
    the broker's enquire_links in between."""
    sequence = client.next_sequence()
    send_raw(client, raw_header(16 + len(body), command_id, 0, sequence) + body, what)
    while True:
        got_id, command, status, got_sequence, got_body = read_raw_pdu(client)
        if got_id == ENQUIRE_LINK:
            client._socket.sendall(raw_header(16, ENQUIRE_LINK_RESP, 0, got_sequence))
            continue
        emit(
            "response",
            client=client.name,
            request=what,
            request_sequence=sequence,
            command=command,
            sequence=got_sequence,
            status=status,
            body_length=len(got_body),
            **extra
        )
        return status


def cancel(client, label, message_id, destination=DESTINATION):
    """cancel_sm by message_id (smpplib has no cancel_sm): service_type, message_id,
    source and destination addresses."""
    intl, isdn = smpplib.consts.SMPP_TON_INTL, smpplib.consts.SMPP_NPI_ISDN
    body = (
        c_octets("")
        + c_octets(message_id)
        + struct.pack(">BB", intl, isdn) + c_octets(SOURCE)
        + struct.pack(">BB", intl, isdn) + c_octets(destination)
    )
    return raw_exchange(client, "cancel_sm", CANCEL_SM, body, label=label)


def replace(client, label, message_id, message, text_=None):
    """replace_sm (smpplib has none): message_id, source address, schedule and
    validity left as they are (empty), registered_delivery 0, sm_default_msg_id 0.
    `text_` (what `message` says) goes into the response event."""
    body = (
        c_octets(message_id)
        + struct.pack(">BB", smpplib.consts.SMPP_TON_INTL, smpplib.consts.SMPP_NPI_ISDN)
        + c_octets(SOURCE)
        + c_octets("")
        + c_octets("")
        + struct.pack(">BBB", 0, 0, len(message))
        + message
    )
    extra = {"label": label}
    if text_ is not None:
        extra["text"] = text_
    return raw_exchange(client, "replace_sm", REPLACE_SM, body, **extra)


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


def scenario_texts(host, port):
    """Issue 3 texts: GSM-7 with every extension character, UCS-2 with an emoji,
    long GSM and UCS-2 texts in UDH parts (one blindly cut inside an ESC pair, one
    inside a surrogate pair), a long text in SAR parts, and a data_sm. Each long
    text goes to its own destination, so no two sets can share a key."""
    random.seed(3)
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    submit_text(client, "gsm7", GSM_TEXT)
    submit_text(client, "ucs2", UCS2_TEXT)
    submit_text(client, "long_gsm", LONG_GSM_TEXT, destination="4917600001")
    submit_text(client, "long_ucs2", LONG_UCS2_TEXT, destination="4917600002")
    submit_text(client, "long_sar", LONG_GSM_TEXT.replace(u"fox", u"cat"), destination="4917600003", use_udhi=False)
    emit("message", client=client.name, label="data_sm", text=DATA_SM_TEXT, parts=1, data_coding=0, esm_class=0)
    kwargs = submit_kwargs(None)
    del kwargs["short_message"]
    p = smpplib.smpp.make_pdu(
        "data_sm", client=client, data_coding=0, message_payload=smpplib.gsm.gsm_encode(DATA_SM_TEXT), **kwargs
    )
    client.send_pdu(p)
    await_response(client, "data_sm", p.sequence, label="data_sm", part=1)
    unbind(client)
    expect_closed(client)


def scenario_query_cancel_replace(host, port):
    """query_sm, replace_sm and cancel_sm on waiting messages, and their refusals."""
    random.seed(4)
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    kept = message_id_of(submit(client, b"keep me", label="submit kept"))
    doomed = message_id_of(submit(client, b"cancel me", label="submit doomed"))
    query(client, "query kept", kept)
    query(client, "query unknown", "1234567890123456789")
    replace(client, "replace kept", kept, smpplib.gsm.gsm_encode(REPLACED_TEXT), REPLACED_TEXT)
    query(client, "query kept after replace", kept)
    cancel(client, "cancel doomed", doomed)
    query(client, "query doomed", doomed)
    cancel(client, "cancel doomed again", doomed)
    replace(client, "replace doomed", doomed, b"too late")
    cancel(client, "cancel unknown", "1234567890123456789")
    replace(client, "replace unknown", "1234567890123456789", b"nobody")
    # Cancelling one part of a long message cancels its whole set.
    parts = submit_text(client, "long", LONG_GSM_TEXT, destination="4917600009")
    cancel(client, "cancel long part 2", message_id_of(parts[1]), destination="4917600009")
    for seq, part in enumerate(parts, start=1):
        query(client, "query long part %d" % seq, message_id_of(part))
    unbind(client)
    expect_closed(client)


def scenario_receipt(host, port):
    """submit_sm with registered_delivery=1 through the sandbox; the receipt comes
    as deliver_sm (smpplib answers it), then query_sm."""
    client = connect("esme", host, port)
    bind(client, "transceiver", "demo", "demo1234")
    kwargs = submit_kwargs(b"receipt please")
    kwargs["registered_delivery"] = 1
    p = client.send_message(**kwargs)
    message_id = message_id_of(await_response(client, "submit_sm", p.sequence, label="submit"))
    await_receipt(client)
    query(client, "query after receipt", message_id)
    unbind(client)
    expect_closed(client)


def await_receipt(client):
    """Reads with smpplib's own loop (it answers the deliver_sm) until a receipt
    comes, for at most 20 s, and emits it."""
    receipts = []
    client.set_message_received_handler(lambda pdu: receipts.append(pdu))
    deadline = time.monotonic() + 20
    while not receipts and time.monotonic() < deadline:
        client.read_once()
    r = receipts[0]
    emit(
        "receipt",
        client=client.name,
        esm_class=r.esm_class,
        short_message=text(r.short_message),
        receipted_message_id=text(r.receipted_message_id),
        message_state=r.message_state,
    )


def scenario_long_receipt(host, port):
    """A long message whose last part alone asks for a receipt, as Jasmin 0.11
    sends them; once the test has the phone report it delivered, the receipt comes
    as deliver_sm (smpplib answers it)."""
    client = connect("esme", host, port)
    bind(client, "transceiver", "acme", "acme1234")
    parts = submit_text(client, "long", LONG_GSM_TEXT, receipt_on_last_part=True)
    emit(
        "submitted",
        client=client.name,
        parts=len(parts),
        first=message_id_of(parts[0]),
        last=message_id_of(parts[-1]),
    )
    await_receipt(client)
    unbind(client)
    expect_closed(client)


def _concatenation(short_message):
    """(reference, total, number, text octets) from a concatenation UDH (IEI 0x00,
    8-bit reference, or 0x08, 16-bit), or None."""
    udh_len = short_message[0]
    udh, body = short_message[1:1 + udh_len], short_message[1 + udh_len:]
    i = 0
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        ie = udh[i + 2:i + 2 + length]
        if iei == 0x00 and length == 3:
            return ie[0], ie[1], ie[2], body
        if iei == 0x08 and length == 4:
            return (ie[0] << 8) | ie[1], ie[2], ie[3], body
        i += 2 + length
    return None


def scenario_mo(host, port, count):
    """Binds as receiver and reassembles incoming messages (deliver_sm with
    esm_class 0, long ones in UDH segments) until `count` are whole. Emits each as
    hex octets, and as text when it is UCS-2."""
    client = connect("esme", host, port)
    bind(client, "receiver", "acme", "acme1234")
    emit("listening", client=client.name)
    complete = []
    partial = {}

    def received(pdu):
        short_message = pdu.short_message or b""
        payload = getattr(pdu, "message_payload", None)
        key = (text(pdu.source_addr), pdu.data_coding)
        if pdu.esm_class & 0x40:
            reference, total, number, body = _concatenation(short_message)
            parts = partial.setdefault(key + (reference,), {})
            parts[number] = body
            emit("segment", client=client.name, number=number, total=total,
                 data_coding=pdu.data_coding, octets=len(short_message))
            if len(parts) < total:
                return
            del partial[key + (reference,)]
            octets = b"".join(parts[n] for n in range(1, total + 1))
        else:
            octets = payload if payload else short_message
        fields = dict(
            client=client.name,
            source=key[0],
            data_coding=pdu.data_coding,
            octets_hex=binascii.hexlify(octets).decode("ascii"),
        )
        if pdu.data_coding == 8:
            fields["text"] = octets.decode("utf-16-be")
        complete.append(fields)
        emit("mo", **fields)

    client.set_message_received_handler(received)
    deadline = time.monotonic() + 20
    while len(complete) < int(count) and time.monotonic() < deadline:
        client.read_once()
    unbind(client)
    expect_closed(client)


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
    "texts": scenario_texts,
    "query_cancel_replace": scenario_query_cancel_replace,
    "receipt": scenario_receipt,
    "long_receipt": scenario_long_receipt,
    "mo": scenario_mo,
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
