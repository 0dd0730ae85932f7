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
                 response says Connection: close, so no client reuses a connection about to close
"""
import ipaddress
import json
import os
import time

_draining = False


def start_draining():
    """Called by django_asgi_serve.py in this worker process when its graceful shutdown begins."""
    global _draining
    _draining = True


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

    def closing(self):
        if _draining or not self.marker:
            return _draining
        now = time.monotonic()
        if now - self.checked >= 0.05:
            self.checked, self.marked = now, os.path.exists(self.marker)
        return self.marked

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.closing():
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": headers + [(b"connection", b"close")]}
            await send(message)

        return await self.app(scope, receive, send_closing)
