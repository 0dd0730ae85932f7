#!/usr/bin/env python3
"""A crowd of long-lived clients for the example's /ws/echo/ and /events/ (standard library only):
WebSockets and server-sent-event streams that stay connected, and reconnect with backoff whenever
the server ends them, as a well-behaved browser client does, until a stop file appears.

  crowd.py --base http://HOST[:PORT] [--host HOST] --websockets N --streams M --stop FILE
           --out FILE [--max-seconds S]

At the stop file, one WebSocket broadcasts a message to the room and every WebSocket must receive
it within --final-seconds; then each closes (1000). The JSON written to --out counts:
  ws_closes        close codes the server sent, by code (closes the crowd started are not counted)
  ws_abnormal      connections that ended without a close frame (1006: a reset or a silent end)
  ws_failed_opens  connection attempts that did not get 101 and a hello (each retried)
  ws_gap_max       the longest time, in seconds, a WebSocket client was without a connection
  ws_last_releases the release of each client's last hello, by release
  ws_final         clients that received the final broadcast
  sse_clean, sse_abnormal  streams that ended with the last chunk / without it
  sse_gap_max      the same as ws_gap_max, for streams
With --events FILE, every connection's opening and end is also written there as a JSON line (wall
clock time, client, local port, what happened), to line up with a server's journal.
"""
import argparse
import asyncio
import base64
import collections
import json
import os
import random
import struct
import time
from urllib.parse import urlsplit


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Ended(Exception):
    """The peer ended the connection without a close frame (or a stream without its last chunk)."""


# What a failed connection attempt raises: it is counted and retried with backoff.
OPEN_ERRORS = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, Ended, ValueError)


async def read_frame(reader):
    try:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        return b0 & 0x0F, await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Ended(str(exc)) from exc


async def open_websocket(addr, host, timeout):
    """Connect, upgrade to a WebSocket on the example's /ws/echo/ and read the consumer's hello:
    (reader, writer, hello). Raises one of OPEN_ERRORS, the connection closed."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws/echo/ HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Ended(head.split(b"\r\n", 1)[0].decode("latin-1"))
        opcode, payload = await asyncio.wait_for(read_frame(reader), timeout)
        hello = json.loads(payload) if opcode == 0x1 else {}
        if not hello.get("hello"):
            raise Ended(f"no hello: opcode {opcode}")
        return reader, writer, hello
    except OPEN_ERRORS:
        if writer is not None:
            writer.close()
        raise


class Crowd:
    def __init__(self, args):
        self.args = args
        url = urlsplit(args.base)
        self.addr = (url.hostname, url.port or 80)
        self.host = args.host or url.netloc
        self.stopping = asyncio.Event()
        self.final_sent = asyncio.Event()
        self.nonce = base64.b16encode(os.urandom(4)).decode()
        self.stats = {"ws_closes": collections.Counter(), "ws_abnormal": 0, "ws_failed_opens": 0, "ws_gap_max": 0.0,
                      "ws_last_releases": collections.Counter(), "ws_final": 0, "ws_connections": 0,
                      "sse_clean": 0, "sse_abnormal": 0, "sse_failed_opens": 0, "sse_gap_max": 0.0, "sse_events": 0,
                      "errors": collections.Counter()}
        self.connected = []  # one Event per WebSocket client, set while it has a hello
        self.events = open(args.events, "w") if args.events else None

    def event(self, client, writer, what, **details):
        if self.events is not None:
            port = writer.get_extra_info("sockname")[1] if writer is not None and writer.get_extra_info("sockname") else None
            self.events.write(json.dumps({"t": round(time.time(), 3), "client": client, "port": port, "event": what, **details}) + "\n")

    async def backoff(self, attempt):
        # 0.1 s doubling to 2 s, each with up to half again at random: a restarted host's clients
        # do not all come back in the same millisecond.
        delay = min(0.1 * 2 ** attempt, 2.0)
        try:
            await asyncio.wait_for(self.stopping.wait(), delay * (1 + random.random() / 2))
        except asyncio.TimeoutError:
            pass

    async def failed_open(self, kind, index, exc, writer, attempt):
        self.event(f"{kind}{index}", writer, "failed open", error=f"{type(exc).__name__}: {exc}"[:120])
        self.stats[f"{kind}_failed_opens"] += 1
        self.stats["errors"][f"{kind} open: {type(exc).__name__}"] += 1
        if writer is not None:
            writer.close()
        await self.backoff(attempt)

    async def websocket(self, index):
        release = None
        down_since = time.monotonic()
        attempt = 0
        while not self.stopping.is_set():
            try:
                reader, writer, hello = await open_websocket(self.addr, self.host, 5)
            except OPEN_ERRORS as exc:
                await self.failed_open("ws", index, exc, None, attempt)
                attempt += 1
                continue
            attempt = 0
            release = hello.get("release")
            self.event(f"ws{index}", writer, "open", release=release)
            self.stats["ws_connections"] += 1
            self.stats["ws_gap_max"] = max(self.stats["ws_gap_max"], time.monotonic() - down_since)
            self.connected[index].set()
            closed_by_us = False
            try:
                while True:
                    read = asyncio.ensure_future(read_frame(reader))
                    stop = asyncio.ensure_future(self.final_sent.wait())
                    done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if read not in done:
                        read.cancel()
                        stop.cancel()
                        # Stopping: index 0 broadcasts, everyone waits for it, then closes.
                        got = await self.final(reader, writer, index)
                        self.stats["ws_final"] += got
                        writer.write(frame(0x8, struct.pack("!H", 1000)))
                        await writer.drain()
                        closed_by_us = True
                        break
                    stop.cancel()
                    opcode, payload = read.result()
                    if opcode == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        self.stats["ws_closes"][str(code)] += 1
                        self.event(f"ws{index}", writer, "close", code=code)
                        writer.write(frame(0x8, payload[:2]))
                        break
                    if opcode == 0x9:
                        writer.write(frame(0xA, payload))
            except (Ended, OSError) as exc:
                if not closed_by_us:
                    self.stats["ws_abnormal"] += 1
                    self.event(f"ws{index}", writer, "abnormal", error=f"{type(exc).__name__}: {exc}"[:120])
                    self.stats["errors"][f"ws: {type(exc).__name__}: {exc}"[:120]] += 1
            finally:
                self.connected[index].clear()
                down_since = time.monotonic()
                writer.close()
            if closed_by_us:
                break
            await self.backoff(0)
        if release is not None:
            self.stats["ws_last_releases"][release] += 1

    async def final(self, reader, writer, index):
        """After the stop: client 0 broadcasts; every client reads until it sees the message."""
        text = f"final-{self.nonce}"
        if index == 0:
            writer.write(frame(0x1, f"broadcast:{text}".encode()))
            await writer.drain()
        deadline = time.monotonic() + self.args.final_seconds
        try:
            while time.monotonic() < deadline:
                opcode, payload = await asyncio.wait_for(read_frame(reader), deadline - time.monotonic())
                if opcode == 0x1 and json.loads(payload).get("broadcast") == text:
                    return 1
                if opcode == 0x8:
                    return 0
        except (asyncio.TimeoutError, Ended, ValueError):
            pass
        return 0

    async def stream(self, index):
        down_since = time.monotonic()
        attempt = 0
        last_id = None
        while not self.stopping.is_set():
            writer = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.addr), 5)
                extra = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
                writer.write((f"GET /events/?count=100&interval=0.5 HTTP/1.1\r\nHost: {self.host}\r\n"
                              f"Accept: text/event-stream\r\n{extra}\r\n").encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                    raise Ended(head.split(b"\r\n", 1)[0].decode("latin-1"))
            except OPEN_ERRORS as exc:
                await self.failed_open("sse", index, exc, writer, attempt)
                attempt += 1
                continue
            attempt = 0
            self.stats["sse_gap_max"] = max(self.stats["sse_gap_max"], time.monotonic() - down_since)
            try:
                while True:
                    read = asyncio.ensure_future(reader.readuntil(b"\r\n"))
                    stop = asyncio.ensure_future(self.stopping.wait())
                    done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if read not in done:
                        read.cancel()
                        break
                    size = int(read.result().split(b";")[0], 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        self.stats["sse_clean"] += 1
                        break
                    for line in chunk.decode().splitlines():
                        if line.startswith("id: "):
                            last_id = line[4:]
                            self.stats["sse_events"] += 1
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                self.stats["sse_abnormal"] += 1
                self.stats["errors"][f"sse: {type(exc).__name__}"] += 1
            finally:
                down_since = time.monotonic()
                writer.close()
            await self.backoff(0)

    async def watch_stop(self):
        started = time.monotonic()
        while not os.path.exists(self.args.stop) and time.monotonic() - started < self.args.max_seconds:
            await asyncio.sleep(0.2)
        # The final broadcast goes out once every WebSocket client is connected (bounded).
        deadline = time.monotonic() + self.args.final_seconds
        while not all(e.is_set() for e in self.connected) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.stopping.set()
        self.final_sent.set()

    async def run(self):
        self.connected = [asyncio.Event() for _ in range(self.args.websockets)]
        tasks = [self.websocket(i) for i in range(self.args.websockets)] + [self.stream(i) for i in range(self.args.streams)]
        await asyncio.gather(self.watch_stop(), *tasks)
        out = dict(self.stats)
        for key in ("ws_closes", "ws_last_releases", "errors"):
            out[key] = dict(out[key])
        out["ws_gap_max"] = round(out["ws_gap_max"], 3)
        out["sse_gap_max"] = round(out["sse_gap_max"], 3)
        out["websockets"], out["streams"] = self.args.websockets, self.args.streams
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--host")
    ap.add_argument("--websockets", type=int, default=50)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--final-seconds", type=float, default=5)
    ap.add_argument("--events")
    args = ap.parse_args()
    result = asyncio.run(Crowd(args).run())
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
