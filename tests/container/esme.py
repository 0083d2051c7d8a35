#!/usr/bin/env python3
"""An operator's ESME for tests/container/run.sh: python-smpplib as a
transceiver of the container's `demo` account.

Usage: esme.py HOST PORT MESSAGES [--tls CAFILE] [--receipts] [--ids FILE]

Submits MESSAGES submit_sm asking for a receipt and prints one JSON line:
{"acknowledged": [message_id, ...], "receipts": {message_id: "DELIVRD", ...}}.
With --receipts it waits (up to 60 s) until every acknowledged message has
its receipt, and exits 1 if one is missing. With --tls it connects over TLS,
verifying the broker's certificate against CAFILE for the name localhost.
With --ids FILE it appends each message_id to FILE as soon as its
submit_sm_resp arrives, so that a killed broker can be checked against them.
"""

import json
import re
import socket
import ssl
import sys
import time

import smpplib.client
import smpplib.consts


def main(argv):
    host, port, count = argv[0], int(argv[1]), int(argv[2])
    cafile = argv[argv.index("--tls") + 1] if "--tls" in argv else None
    want_receipts = "--receipts" in argv
    ids_file = argv[argv.index("--ids") + 1] if "--ids" in argv else None

    context = None
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = True
    client = smpplib.client.Client(host, port, timeout=10)
    acknowledged, receipts = [], {}

    def on_sent(pdu):
        message_id = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else pdu.message_id
        acknowledged.append(message_id)
        if ids_file:
            with open(ids_file, "a") as out:
                out.write(message_id + "\n")

    def on_message(pdu):
        text = pdu.short_message.decode(errors="replace")
        found = re.search(r"id:(\S+) .* stat:(\w+)", text)
        if found:
            receipts[found.group(1)] = found.group(2)

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_message)
    if context is not None:
        # smpplib's own ssl_context wraps without a server name, which a
        # verifying context refuses: the certificate is made for localhost.
        raw = socket.create_connection((host, port), timeout=10)
        client._socket = context.wrap_socket(raw, server_hostname="localhost")
        client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
    else:
        client.connect()
    client.bind_transceiver(system_id="demo", password="demo1234")
    for n in range(count):
        client.send_message(
            source_addr_ton=1,
            source_addr="4915100000",
            dest_addr_ton=1,
            destination_addr="49176%05d" % n,
            short_message=("container check %d" % n).encode(),
            registered_delivery=1,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        client.read_once()
        done = len(acknowledged) == count
        if done and (not want_receipts or all(i in receipts for i in acknowledged)):
            break
    try:
        client.unbind()
        client.disconnect()
    except Exception:  # the broker may be going away: the figures are what count
        pass
    print(json.dumps({"acknowledged": acknowledged, "receipts": receipts}))
    if want_receipts and not all(receipts.get(i) == "DELIVRD" for i in acknowledged):
        return 1
    return 0 if len(acknowledged) == count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
