"""ASGI layers that roles/django_asgi puts around Django's application (see django_asgi_entry.py).

Each is a plain ASGI middleware class, switched on by role variables:
  HealthHost     the health path passes ALLOWED_HOSTS whatever Host a load balancer probes with
                 (Django's own view still answers it), and answers 503 while the host is drained
                 (HTTP only: a drained host keeps its WebSockets and accepts new ones)
  ProxyHeaders   client address and scheme from X-Forwarded-For/-Proto of trusted proxies, for
                 servers without a flag for it
  ReleaseHeader  names the serving release in every response and WebSocket handshake (the
                 deploy's health gate reads it)
  LifespanShim   answers ASGI lifespan events, which Django does not implement
  CloseWhenDraining  once the server began a graceful shutdown (django_asgi_serve.py), every
                 response says Connection: close, so no client reuses a connection about to close;
                 every open WebSocket is closed with 1012 (service restart) and every server-sent
                 event stream ends with its last chunk, and the application is told the client
                 left, so a restart waits for no long-lived connection
"""
import asyncio
import ipaddress
import json
import os
import time

_draining = False
# How each open long-lived connection of this process learns that the shutdown began.
_wake_on_drain = set()


def start_draining():
    """Called by django_asgi_serve.py in this worker process when its graceful shutdown begins."""
    global _draining
    _draining = True
    for wake in list(_wake_on_drain):
        wake()


class HealthHost:
    def __init__(self, app, path, host, drain_file=None, release=""):
        self.app = app
        self.path = path
        self.host = host.encode("latin-1")
        self.drain_file = drain_file
        self.release = release

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        if self.drain_file and os.path.exists(self.drain_file):
            body = json.dumps({"status": "draining", "release": self.release}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"host"] + [(b"host", self.host)]
        return await self.app({**scope, "headers": headers}, receive, send)


class ProxyHeaders:
    def __init__(self, app, trusted):
        self.app = app
        self.trusted = [ipaddress.ip_network(t, strict=False) for t in trusted if t != "*"]
        self.trust_all = "*" in trusted

    def _trusted(self, host):
        if self.trust_all:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope.get("client") and self._trusted(scope["client"][0]):
            headers = dict(scope.get("headers", []))
            changes = {}
            proto = headers.get(b"x-forwarded-proto")
            if proto:
                scheme = proto.decode("latin-1").split(",")[-1].strip()
                changes["scheme"] = ("wss" if scheme == "https" else "ws") if scope["type"] == "websocket" else scheme
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]
                # The client is the right-most hop that is not one of our proxies.
                for hop in reversed(hops):
                    if not self._trusted(hop):
                        changes["client"] = (hop, 0)
                        break
            if changes:
                scope = {**scope, **changes}
        return await self.app(scope, receive, send)


class ReleaseHeader:
    def __init__(self, app, header, release):
        self.app = app
        self.header = (header.lower().encode("latin-1"), release.encode("latin-1"))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)

        async def send_with_release(message):
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        return await self.app(scope, receive, send_with_release)


class LifespanShim:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class CloseWhenDraining:
    """Connection: close on every response once this process drains. A server that cannot be
    patched (Granian) is told by a file instead: while ``marker`` exists (the restart command
    creates it in the unit's runtime directory before it stops the unit), looked at every 50 ms."""

    def __init__(self, app, marker=None):
        self.app = app
        self.marker = marker
        self.checked = 0.0
        self.marked = False
        self.poller = None

    def closing(self):
        if _draining or not self.marker:
            return _draining
        now = time.monotonic()
        if now - self.checked >= 0.05:
            self.checked, self.marked = now, os.path.exists(self.marker)
        return self.marked

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" or (scope["type"] == "http" and _wants_event_stream(scope)):
            return await _LongLived(self, scope, receive, send).serve()
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.closing():
                message = _connection_close(message)
            await send(message)

        return await self.app(scope, receive, send_closing)

    async def closing_begins(self, woken):
        if self.marker and (self.poller is None or self.poller.done()):
            self.poller = asyncio.ensure_future(self.poll_marker())
        if not self.closing():
            await woken.wait()

    async def poll_marker(self):
        # One poller per process, only while long-lived connections are open.
        while _wake_on_drain and not self.closing():
            await asyncio.sleep(0.05)
        if self.closing():
            for wake in list(_wake_on_drain):
                wake()


def _connection_close(start):
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"connection"]
    return {**start, "headers": headers + [(b"connection", b"close")]}


def _wants_event_stream(scope):
    # EventSource always asks for text/event-stream: other requests keep the plain path.
    return any(k == b"accept" and b"text/event-stream" in v for k, v in scope.get("headers", []))


class _LongLived:
    """A WebSocket or an event stream: once the shutdown begins, the layer ends it itself (close
    1012, or the stream's last chunk) and the application's next receive() says the client left."""

    def __init__(self, layer, scope, receive, send):
        self.layer, self.scope, self.receive, self.send = layer, scope, receive, send
        self.websocket = scope["type"] == "websocket"
        self.lock = asyncio.Lock()
        self.ended = asyncio.Event()
        self.woken = asyncio.Event()
        self.open = self.done = False
        self.watcher = None
        loop = asyncio.get_running_loop()
        self.wake = lambda: loop.call_soon_threadsafe(self.woken.set)

    async def serve(self):
        try:
            return await self.layer.app(self.scope, self.receive_or_end, self.guarded_send)
        finally:
            _wake_on_drain.discard(self.wake)
            if self.watcher is not None:
                self.watcher.cancel()

    async def end_on_shutdown(self):
        await self.layer.closing_begins(self.woken)
        async with self.lock:
            if not self.done:
                self.done = True
                await self.send({"type": "websocket.close", "code": 1012} if self.websocket
                                else {"type": "http.response.body", "body": b"", "more_body": False})
        self.ended.set()

    async def guarded_send(self, message):
        async with self.lock:
            if self.done:
                return  # the layer ended it: the application's last words have nowhere to go
            kind = message["type"]
            if kind == "http.response.start" and self.layer.closing():
                message = _connection_close(message)
            await self.send(message)
            if kind in ("websocket.close", "websocket.http.response.start") or (
                    kind == "http.response.body" and not message.get("more_body", False)):
                self.done = True
            elif kind in ("websocket.accept", "http.response.start") and not self.open:
                self.open = True
                _wake_on_drain.add(self.wake)
                self.watcher = asyncio.ensure_future(self.end_on_shutdown())

    async def receive_or_end(self):
        left = {"type": "websocket.disconnect", "code": 1012} if self.websocket else {"type": "http.disconnect"}
        if self.ended.is_set():
            return left
        message = asyncio.ensure_future(self.receive())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({message, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not message.done():
                message.cancel()
        return message.result() if message.done() and not message.cancelled() else left
