#!/usr/bin/env python3
"""An independent device client of Tessera's sync protocol, over aioquic.

Written from docs/sync-protocol.md and proto/tessera/v1/sync.proto only,
so that the device protocol is proven by a QUIC and TLS stack nobody in
this project wrote. tests/sync_aioquic.rs runs it once per scenario: the
scenario and everything it needs arrive as one JSON object on stdin, and
the script prints one JSON object of what it observed on stdout. The Rust
test judges the observations; this script only fails (exit status 1) when
the server does something the protocol page rules out, such as a frame of
a type that cannot come at that point, or when it cannot finish at all.

Input: {"mode": "live" | "resume" | "conflict" | "attacks" | "aes_only",
        "pool_id": ..., "token": ..., "nodes": {"1": {"addr": "host:port",
        "fingerprint": "<lowercase hex sha-256 of the leaf DER>"}, ...},
        plus the mode's own fields (see each mode below).

The protobuf messages are encoded and decoded by the small wire codec
below (varints, length-delimited fields, nested messages), for just the
messages a device needs: no generated code, so nothing of the project's
build leaks in.
"""

import asyncio
import contextlib
import hashlib
import json
import ssl
import struct
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated
from aioquic.tls import CipherSuite
from cryptography.hazmat.primitives.serialization import Encoding

ALPN = "tessera-sync/1"
# The Hello may be at most 64 KiB; later frames at most max_frame_bytes,
# which SyncWelcome announces.
HELLO_LIMIT = 64 * 1024
WAIT = 15.0


class ProtocolViolation(Exception):
    """The server did something docs/sync-protocol.md rules out."""


class Refused(Exception):
    """The server's certificate is not the pinned one."""

    def __init__(self, seen):
        super().__init__(f"the server presented certificate {seen}, not the pinned one")
        self.seen = seen


# ---------------------------------------------------------------------------
# Protobuf wire format
# ---------------------------------------------------------------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def varint(n):
    # int64 fields carry negative numbers as their 64-bit two's complement.
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n, always=False):
    """A scalar; proto3 leaves zero out unless the field has presence."""
    return tag(field, VARINT) + varint(n) if (n or always) else b""


def f_bytes(field, data, always=False):
    return tag(field, LEN) + varint(len(data)) + data if (data or always) else b""


def f_str(field, text, always=False):
    return f_bytes(field, text.encode("utf-8"), always)


def f_msg(field, body):
    """A nested message is present even when empty."""
    return tag(field, LEN) + varint(len(body)) + body


def read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtocolViolation("a truncated or overlong varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """(field number, wire type, value) of each field of a message."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, i = read_varint(buf, i)
        elif wire == LEN:
            n, i = read_varint(buf, i)
            if i + n > len(buf):
                raise ProtocolViolation("a length-delimited field runs past its message")
            value, i = bytes(buf[i : i + n]), i + n
        elif wire == I64:
            value, i = bytes(buf[i : i + 8]), i + 8
        elif wire == I32:
            value, i = bytes(buf[i : i + 4]), i + 4
        else:
            raise ProtocolViolation(f"wire type {wire}")
        yield field, wire, value


# Decoding schemas of the server's messages: field number -> (name, kind),
# kind a scalar type or another schema's name; "[]" marks repeated fields.
SCHEMAS = {
    "SyncCursor": {1: ("epoch", "uint64"), 2: ("seq", "uint64")},
    "SyncRecord": {
        1: ("key", "string"),
        2: ("value", "string?"),
        3: ("sync_count", "int64"),
        4: ("last_modified_date", "int64"),
        5: ("last_modified_by", "string"),
        6: ("device_last_modified_date", "int64"),
    },
    "SyncWelcome": {
        1: ("identity_pool_id", "string"),
        2: ("identity_id", "string"),
        3: ("expires_at", "int64"),
        4: ("cursor", "SyncCursor"),
        5: ("node_id", "uint64"),
        6: ("max_frame_bytes", "uint64"),
    },
    "SyncChange": {
        1: ("cursor", "SyncCursor"),
        2: ("dataset_name", "string"),
        3: ("kind", "string"),
        4: ("dataset_sync_count", "int64"),
        5: ("records", "SyncRecord[]"),
        6: ("device_id", "string"),
        7: ("at", "int64"),
    },
    "SyncResync": {1: ("from", "SyncCursor"), 2: ("reason", "string")},
    "SyncReload": {1: ("cursor", "SyncCursor"), 2: ("reason", "string")},
    "SyncCaughtUp": {1: ("cursor", "SyncCursor")},
    "UpdateRecordsResponse": {
        1: ("records", "SyncRecord[]"),
        2: ("dataset_sync_count", "int64"),
        3: ("cursor", "SyncCursor"),
    },
    "SyncConflict": {
        1: ("records", "SyncRecord[]"),
        2: ("dataset_sync_count", "int64"),
        3: ("omitted_records", "int64"),
    },
    "SyncError": {1: ("exception", "string"), 2: ("message", "string")},
    "SyncWriteResult": {
        1: ("request_id", "uint64"),
        2: ("ok", "UpdateRecordsResponse"),
        3: ("conflict", "SyncConflict"),
        4: ("error", "SyncError"),
    },
    "SyncPong": {1: ("nonce", "uint64")},
    "SyncGoodbye": {1: ("code", "uint64"), 2: ("reason", "string")},
}

# ServerFrame's oneof: field number -> (frame type, schema).
SERVER_FRAME = {
    1: ("welcome", "SyncWelcome"),
    2: ("change", "SyncChange"),
    3: ("resync", "SyncResync"),
    4: ("reload", "SyncReload"),
    5: ("caught_up", "SyncCaughtUp"),
    6: ("write_result", "SyncWriteResult"),
    7: ("pong", "SyncPong"),
    8: ("goodbye", "SyncGoodbye"),
}


def default(kind):
    if kind.endswith("[]"):
        return []
    if kind.endswith("?") or kind in SCHEMAS:
        return None  # absent: no presence, unlike a zero scalar
    return "" if kind == "string" else 0


def decode(schema, buf):
    spec = SCHEMAS[schema]
    out = {name: default(kind) for name, kind in spec.values()}
    for field, wire, value in fields(buf):
        if field not in spec:
            continue  # unknown fields are skipped, as protobuf requires
        name, kind = spec[field]
        base = kind.rstrip("[]?")
        if base in SCHEMAS:
            if wire != LEN:
                raise ProtocolViolation(f"{schema}.{name} is not a message")
            item = decode(base, value)
        elif base == "string":
            if wire != LEN:
                raise ProtocolViolation(f"{schema}.{name} is not a string")
            item = value.decode("utf-8")
        else:
            if wire != VARINT:
                raise ProtocolViolation(f"{schema}.{name} is not a varint")
            item = value - (1 << 64) if base == "int64" and value >= 1 << 63 else value
        if kind.endswith("[]"):
            out[name].append(item)
        else:
            out[name] = item
    return out


def decode_server_frame(buf):
    """A ServerFrame as {"type": ..., **message}; several oneof members
    keep the last, as protobuf does."""
    frame = None
    for field, wire, value in fields(buf):
        if field in SERVER_FRAME and wire == LEN:
            kind, schema = SERVER_FRAME[field]
            frame = {"type": kind, **decode(schema, value)}
    if frame is None:
        raise ProtocolViolation(f"a ServerFrame with no message: {buf.hex()}")
    return frame


def cursor_msg(c):
    return f_varint(1, c["epoch"]) + f_varint(2, c["seq"])


def hello_frame(pool_id, credentials, device_id, version=1):
    hello = f_varint(1, version) + f_str(2, pool_id) + f_str(3, credentials, always=True) + f_str(5, device_id)
    return f_msg(1, hello)


def subscribe_frame(dataset="", cursor=None):
    body = f_str(1, dataset)
    if cursor is not None:
        body += f_msg(2, cursor_msg(cursor))
    return f_msg(2, body)


def patch_msg(op, key, value, sync_count):
    body = f_str(1, op) + f_str(2, key)
    if value is not None:
        body += f_str(3, value, always=True)
    return body + f_varint(4, sync_count)


def write_frame(request_id, dataset, patches):
    body = f_varint(1, request_id) + f_str(2, dataset)
    for p in patches:
        body += f_msg(3, patch_msg(p["op"], p["key"], p.get("value"), p["sync_count"]))
    return f_msg(3, body)


def ping_frame(nonce):
    return f_msg(4, f_varint(1, nonce))


# ---------------------------------------------------------------------------
# The device
# ---------------------------------------------------------------------------


class Watched(QuicConnectionProtocol):
    """Keeps the ConnectionTerminated event: the close's error code (the
    protocol's close code) and reason."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.terminated = None

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated) and self.terminated is None:
            self.terminated = event
        super().quic_event_received(event)


class Device:
    """One QUIC connection and its one bidirectional stream."""

    def __init__(self):
        self.stack = contextlib.AsyncExitStack()
        self.max_frame = HELLO_LIMIT
        self.info = {}

    async def open(self, node, cipher_suites=None):
        host, port = node["addr"].rsplit(":", 1)
        config = QuicConfiguration(alpn_protocols=[ALPN], is_client=True)
        # Trust is the pin, checked below, not a CA chain: the nodes'
        # certificates are self-signed.
        config.verify_mode = ssl.CERT_NONE
        if cipher_suites is not None:
            config.cipher_suites = cipher_suites
        self.proto = await self.stack.enter_async_context(
            connect(host, int(port), configuration=config, create_protocol=Watched)
        )
        tls = self.proto._quic.tls
        der = tls._peer_certificate.public_bytes(Encoding.DER)
        seen = hashlib.sha256(der).hexdigest()
        suite = tls.key_schedule.cipher_suite
        self.info = {
            "fingerprint": seen,
            "cipher_suite": CipherSuite(suite).name,
            "alpn": tls.alpn_negotiated,
        }
        if seen != node["fingerprint"]:
            # Nothing has been sent on a stream yet: refuse before the
            # credential leaves the device.
            self.proto.close(error_code=0, reason_phrase="certificate is not the pinned one")
            await self.close()
            raise Refused(seen)
        if tls.alpn_negotiated != ALPN:
            raise ProtocolViolation(f"ALPN {tls.alpn_negotiated!r}")
        self.reader, self.writer = await self.proto.create_stream()
        return self

    def send_raw(self, data):
        self.writer.write(data)

    def send(self, body):
        self.send_raw(struct.pack(">I", len(body)) + body)

    async def recv(self, timeout=WAIT):
        """The next ServerFrame, or None when the stream ends."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            (n,) = struct.unpack(">I", head)
            if n > self.max_frame:
                raise ProtocolViolation(f"a frame of {n} bytes, above max_frame_bytes {self.max_frame}")
            body = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise ProtocolViolation("the stream ended inside a frame") from e
            return None
        return decode_server_frame(body)

    async def expect(self, kind, timeout=WAIT):
        frame = await self.recv(timeout)
        if frame is None or frame["type"] != kind:
            raise ProtocolViolation(f"expected {kind}, got {frame}")
        return frame

    async def hello(self, pool_id, token, device_id):
        self.send(hello_frame(pool_id, token, device_id))
        welcome = await self.expect("welcome")
        self.max_frame = welcome["max_frame_bytes"]
        return welcome

    async def subscribe(self, dataset="", cursor=None):
        """Subscribes; returns the frames up to and including SyncCaughtUp."""
        self.send(subscribe_frame(dataset, cursor))
        frames = []
        while True:
            frame = await self.recv()
            if frame is None:
                raise ProtocolViolation(f"the stream ended before SyncCaughtUp, after {frames}")
            if frame["type"] not in ("reload", "change", "caught_up"):
                raise ProtocolViolation(f"{frame['type']} while catching up")
            frames.append(frame)
            if frame["type"] == "caught_up":
                return frames

    async def write(self, request_id, dataset, patches):
        """Writes; returns the result and the changes pushed meanwhile
        (the change of a write may come before or after its result)."""
        self.send(write_frame(request_id, dataset, patches))
        pushed = []
        while True:
            frame = await self.recv()
            if frame is None:
                raise ProtocolViolation("the stream ended before the write's result")
            if frame["type"] == "change":
                pushed.append(frame)
            elif frame["type"] == "write_result" and frame["request_id"] == request_id:
                return frame, pushed
            else:
                raise ProtocolViolation(f"{frame} while waiting for write {request_id}")

    async def quiet(self, nonce):
        """The frames that arrive before the answer to a ping: none, on a
        session with nothing to push (the server sends in order)."""
        await asyncio.sleep(0.3)
        self.send(ping_frame(nonce))
        seen = []
        while True:
            frame = await self.recv()
            if frame is None:
                raise ProtocolViolation("the stream ended before the pong")
            if frame["type"] == "pong" and frame["nonce"] == nonce:
                return seen
            seen.append(frame)

    async def until_closed(self):
        """Reads to the end of the stream, then waits for the QUIC close:
        the Goodbye (if any), the frames before it, the close's code and
        reason, and whether it was an application close."""
        frames = []
        goodbye = None
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                frame = await self.recv()
                if frame is None:
                    break
                if frame["type"] == "goodbye":
                    goodbye = frame
                else:
                    frames.append(frame)
        await asyncio.wait_for(self.proto.wait_closed(), WAIT)
        t = self.proto.terminated
        return {
            "goodbye": goodbye,
            "frames": frames,
            "close_code": None if t is None else t.error_code,
            "close_reason": None if t is None else t.reason_phrase,
            # aioquic reports an application CONNECTION_CLOSE (0x1d)
            # without a frame type.
            "application_close": t is not None and t.frame_type is None,
        }

    async def finish(self):
        """Ends the session the way the page says: finishing the stream,
        which the server closes with DONE."""
        self.writer.write_eof()
        return await self.until_closed()

    async def close(self):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stack.aclose(), WAIT)


async def device(node, pool_id, token, device_id, cipher_suites=None):
    d = await Device().open(node, cipher_suites)
    d.info["welcome"] = await d.hello(pool_id, token, device_id)
    return d


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


async def live(args):
    """Device B on node 2 subscribes; device A on node 1 subscribes and
    makes two writes (two records, then one of them again with its new
    sync count); B receives both live. Then B finishes its stream.
    Input: dataset. Output: each device's welcome, cipher suite, the
    frames of its subscription, A's write results, B's live changes."""
    nodes, dataset = args["nodes"], args["dataset"]
    b = await device(nodes["2"], args["pool_id"], args["token"], "device-b")
    b_sub = await b.subscribe()
    a = await device(nodes["1"], args["pool_id"], args["token"], "device-a")
    a_sub = await a.subscribe()
    first, a_pushed = await a.write(
        1,
        dataset,
        [
            {"op": "replace", "key": "color", "value": "blue", "sync_count": 0},
            {"op": "replace", "key": "size", "value": "large", "sync_count": 0},
        ],
    )
    counts = {r["key"]: r["sync_count"] for r in (first.get("ok") or {}).get("records", [])}
    second, more = await a.write(
        2,
        dataset,
        [{"op": "replace", "key": "color", "value": "green", "sync_count": counts.get("color", 0)}],
    )
    a_pushed += more
    b_live = []
    while len(b_live) < 2:
        frame = await b.recv()
        if frame is None or frame["type"] != "change":
            raise ProtocolViolation(f"B expected a change, got {frame}")
        b_live.append(frame)
    b_quiet = await b.quiet(11)
    b_end = await b.finish()
    a_quiet = await a.quiet(12)
    await a.close()
    return {
        "a": {**a.info, "subscribe": a_sub, "results": [first, second], "pushed": a_pushed, "quiet": a_quiet},
        "b": {**b.info, "subscribe": b_sub, "live": b_live, "quiet": b_quiet, "end": b_end},
    }


async def resume(args):
    """Device B on node 3 resumes from its cursor. Input: cursor.
    Output: its welcome and every frame up to SyncCaughtUp, then any
    frame that came before a ping's answer."""
    b = await device(args["nodes"]["3"], args["pool_id"], args["token"], "device-b")
    frames = await b.subscribe("", args["cursor"])
    quiet = await b.quiet(21)
    await b.close()
    return {**b.info, "subscribe": frames, "quiet": quiet}


async def conflict(args):
    """Device A writes `key` with a stale sync count. Input: dataset,
    key, stale_sync_count. Output: the result, and whether the session
    still answers a ping."""
    a = await device(args["nodes"]["1"], args["pool_id"], args["token"], "device-a")
    result, pushed = await a.write(
        7,
        args["dataset"],
        [{"op": "replace", "key": args["key"], "value": "stale write", "sync_count": args["stale_sync_count"]}],
    )
    quiet = await a.quiet(31)
    await a.close()
    return {**a.info, "result": result, "pushed": pushed, "quiet": quiet}


async def refused(node, first_bytes):
    """Opens a connection, sends `first_bytes` raw, and reports how the
    server ended it."""
    d = await Device().open(node)
    d.send_raw(first_bytes)
    end = await d.until_closed()
    await d.close()
    return end


async def attacks(args):
    """Input: forged_token (a credential with edited claims). Output: how
    each attack ended."""
    node = args["nodes"]["1"]
    pool = args["pool_id"]

    def framed(body):
        return struct.pack(">I", len(body)) + body

    out = {
        "garbage_credential": await refused(node, framed(hello_frame(pool, "not-a-credential", "mallory"))),
        "forged_credential": await refused(node, framed(hello_frame(pool, args["forged_token"], "mallory"))),
        "ping_first": await refused(node, framed(ping_frame(1))),
        "subscribe_first": await refused(node, framed(subscribe_frame())),
        # A length prefix alone, one byte above what a Hello may be.
        "oversize_first": await refused(node, struct.pack(">I", HELLO_LIMIT + 1)),
    }
    # Node 1's address with node 2's fingerprint: the client must refuse.
    wrong = {"addr": node["addr"], "fingerprint": args["nodes"]["2"]["fingerprint"]}
    try:
        d = await Device().open(wrong)
        await d.close()
        out["wrong_fingerprint"] = {"refused": False}
    except Refused as e:
        out["wrong_fingerprint"] = {"refused": True, "seen": e.seen}
    return out


async def aes_only(args):
    """A connection that offers only TLS_AES_128_GCM_SHA256 completes the
    handshake and Hello/Welcome."""
    d = await device(
        args["nodes"]["1"], args["pool_id"], args["token"], "device-aes", cipher_suites=[CipherSuite.AES_128_GCM_SHA256]
    )
    quiet = await d.quiet(41)
    await d.close()
    return {**d.info, "quiet": quiet}


MODES = {"live": live, "resume": resume, "conflict": conflict, "attacks": attacks, "aes_only": aes_only}


def main():
    args = json.load(sys.stdin)
    report = asyncio.run(asyncio.wait_for(MODES[args["mode"]](args), 120))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
