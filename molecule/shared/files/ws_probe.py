#!/usr/bin/env python3
"""A WebSocket client (RFC 6455) in Python's standard library, for test hosts that have no
WebSocket library: open one, send text messages, wait for replies, close, print what happened.

  ws_probe.py URL [--host HOST] [--header 'NAME: VALUE']... [--unix PATH] [--send TEXT]...
              [--expect N] [--timeout S] [--hold --ready FILE]

Prints one JSON object: the handshake's status and headers, the text messages received, the close
code the server sent (null if it sent none), and an error if the exchange failed. With --hold it
does not close: once the replies came it waits for the server to close, and "closed_at" says when
(time.time()); a connection that ends without a close frame is an error. --ready FILE is created
when the first message arrives (the example's hello: the consumer has joined its room).
"""
import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
from urllib.parse import urlsplit


def frame(opcode, payload):
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536
                                              else bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self, sock, buffered=b""):
        self.sock, self.buf = sock, buffered

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed without a close frame")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self):
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.take(8))[0]
        return b0 & 0x0F, self.take(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--host")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--unix")
    ap.add_argument("--send", action="append", default=[])
    ap.add_argument("--expect", type=int, default=None, help="replies to wait for (default: one per --send)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--hold", action="store_true", help="wait for the server to close")
    ap.add_argument("--ready", help="file to create once the first message came")
    args = ap.parse_args()
    url = urlsplit(args.url)
    result = {"status": None, "headers": {}, "received": [], "close": None, "closed_at": None, "error": None}
    deadline = time.monotonic() + args.timeout
    try:
        if args.unix:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(args.timeout)
            sock.connect(args.unix)
        else:
            sock = socket.create_connection((url.hostname, url.port or 80), timeout=args.timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1\r\n"
                   f"Host: {args.host or url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   + "".join(f"{h}\r\n" for h in args.header) + "\r\n")
        sock.sendall(request.encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during the handshake")
            raw += chunk
        head, rest = raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        result["status"] = int(lines[0].split()[1])
        result["headers"] = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if result["status"] != 101:
            raise ConnectionError(f"handshake answered {lines[0]}")
        reader = Reader(sock, rest)
        for text in args.send:
            sock.sendall(frame(0x1, text.encode()))
        expect = len(args.send) if args.expect is None else args.expect
        while len(result["received"]) < expect:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            opcode, payload = reader.message()
            if opcode == 0x1:
                result["received"].append(payload.decode())
                if args.ready and len(result["received"]) == 1:
                    open(args.ready, "w").close()
            elif opcode == 0x9:
                sock.sendall(frame(0xA, payload))
            elif opcode == 0x8:
                result["close"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                break
        while args.hold and result["close"] is None:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            opcode, payload = reader.message()
            if opcode == 0x8:
                result["close"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                result["closed_at"] = time.time()
                sock.sendall(frame(0x8, payload[:2]))
            elif opcode == 0x1:
                result["received"].append(payload.decode())
            elif opcode == 0x9:
                sock.sendall(frame(0xA, payload))
        if result["close"] is None:
            sock.sendall(frame(0x8, struct.pack("!H", 1000)))
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            while True:
                opcode, payload = reader.message()
                if opcode == 0x8:
                    result["close"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
        sock.close()
    except (OSError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result))
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
