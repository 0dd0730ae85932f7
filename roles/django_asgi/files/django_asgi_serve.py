"""Graceful shutdown for the ASGI servers roles/django_asgi runs, shipped into every release.

On SIGTERM, Uvicorn, Hypercorn and Daphne stop listening and, in the same instant, close every
connection that has no request in progress (Daphne even drops those that have one). Two races
follow, and each makes a request fail with nothing a client can safely do about it (a POST cannot
be sent again):
  - a connection the server accepted a moment earlier, whose request bytes are already on their
    way, is closed with unread data, and the kernel answers the client with a reset;
  - an idle keep-alive connection is closed while its client is sending the next request on it.
Responses sent during shutdown also carry no ``Connection: close``, so a client may reuse a
connection the server is about to close.

Here a shutdown instead: stops accepting (the systemd socket keeps queueing new connections for the
next instance); answers every request still arriving on an open connection with ``Connection:
close`` (django_asgi_layers.CloseWhenDraining); closes a connection only once it has answered it,
or once it stayed idle for GRACE seconds with no byte waiting in the kernel (checked right before
the close, with nothing in between: a request on its way, on a host too busy to read it yet, is
never cut); then shuts down as the server would. Gunicorn's own asgi worker closes idle connections
itself, but must not close one right after a response that promised keep-alive (GunicornASGIWorker).

  gunicorn ... --worker-class django_asgi_serve.UvicornWorker     (gunicorn_uvicorn)
  python django_asgi_serve.py uvicorn|hypercorn|daphne ARGS...      (the server's own command line)
"""
import asyncio
import fcntl
import os
import signal
import socket
import struct
import sys
import termios
import time

import django_asgi_layers

# Seconds an idle connection gets to deliver a request after the shutdown began: far more than a
# request in flight needs to arrive, far less than systemd's stop timeout.
GRACE = 1.0
_SERVER_ENV = "DJANGO_ASGI_SERVE"
_patched = set()


def bytes_waiting(sock):
    """Bytes the kernel received on this connection that the server has not read yet."""
    try:
        fileno = sock.fileno()
        if fileno < 0:
            return 0
        return struct.unpack("i", fcntl.ioctl(fileno, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, AttributeError, ValueError):
        return 0


def patch_uvicorn():
    """Server.shutdown for gunicorn's UvicornWorker and standalone Uvicorn (every worker process)."""
    if "uvicorn" in _patched:
        return
    from uvicorn.server import Server

    original = Server.shutdown

    def idle(connection):
        cycle = getattr(connection, "cycle", None)
        return cycle is None or cycle.response_complete

    async def shutdown(self, sockets=None):
        django_asgi_layers.start_draining()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        # A request in flight is answered, then its connection closes.
        for connection in list(self.server_state.connections):
            if not idle(connection):
                connection.cycle.keep_alive = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (self.config.timeout_graceful_shutdown or 30)
        while self.server_state.connections and loop.time() < deadline and not self.force_exit:
            if loop.time() >= started + GRACE:
                for connection in list(self.server_state.connections):
                    transport = connection.transport
                    if idle(connection) and not bytes_waiting(transport.get_extra_info("socket")):
                        connection.shutdown()  # closes the idle transport, synchronously
            await asyncio.sleep(0.02)
        # Uvicorn's own shutdown: whatever is left, its tasks and lifespan.
        await original(self, sockets=None)

    Server.shutdown = shutdown
    _patched.add("uvicorn")


def patch_hypercorn():
    """Each worker's idle-connection timer and shutdown trigger (hypercorn.asyncio)."""
    if "hypercorn" in _patched:
        return
    from hypercorn.asyncio import run, tcp_server

    def busy(server):
        protocol = getattr(server.protocol, "protocol", None)
        return (getattr(protocol, "stream", None) is not None
                or len(getattr(server.reader, "_buffer", b"")) > 0
                or bytes_waiting(server.writer.get_extra_info("socket")) > 0)

    async def _idle_timeout(self):
        try:
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        except asyncio.TimeoutError:
            return await asyncio.shield(self._initiate_server_close())  # keep-alive expired, as before
        # Shutting down: a request that arrives now cancels this timer (the connection is busy), is
        # answered with Connection: close, and the connection closes after it. An idle one closes
        # once nothing waits to be read; the check and the close run with nothing in between.
        await asyncio.sleep(GRACE)
        while busy(self):
            await asyncio.sleep(0.02)
        self.writer.close()

    original_serve = run.worker_serve

    # Hypercorn's main process terminates every worker as soon as the first one has exited, so a
    # worker that still answers requests would die mid-request: the unit sends SIGTERM to every
    # process at once instead (KillMode=control-group, vars/servers/hypercorn.yml), and each worker
    # drains on its own SIGTERM, whatever the main process does.
    async def worker_serve(app, config, *, sockets=None, shutdown_trigger=None):
        signalled = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, signalled.set)
        triggers = [signalled.wait] + ([shutdown_trigger] if shutdown_trigger is not None else [])

        async def draining_trigger():
            waiting = [asyncio.ensure_future(t()) for t in triggers]
            _, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            django_asgi_layers.start_draining()

        # The main process's terminate() (SIGTERM) only sets the event again.
        await original_serve(app, config, sockets=sockets, shutdown_trigger=draining_trigger)

    tcp_server.TCPServer._idle_timeout = _idle_timeout
    run.worker_serve = worker_serve
    _patched.add("hypercorn")


def patch_daphne():
    """Daphne (Twisted) drops every connection on SIGTERM: drain them first, then stop."""
    if "daphne" in _patched:
        return
    from daphne import http_protocol, server as daphne_server, ws_protocol

    Server = daphne_server.Server
    original_run = Server.run
    original_listen_success = Server.listen_success
    original_build = http_protocol.HTTPFactory.buildProtocol

    original_server_close = ws_protocol.WebSocketProtocol.serverClose

    def server_close(protocol, code=None):
        # Autobahn's sendClose takes 1000 and 3000-4999 only: an application's 1001 or 1012 (going
        # away, service restart) raised there and the connection dropped without a close frame.
        if code is not None and 1001 <= code <= 2999 and code not in (1004, 1005, 1006, 1015):
            return protocol.sendCloseFrame(code=code, isReply=False)
        return original_server_close(protocol, code)

    def open_websockets(server):
        return [p for p, details in server.connections.items()
                if isinstance(p, ws_protocol.WebSocketProtocol) and "disconnected" not in details]

    def listen_success(self, port):
        self.django_asgi_ports.append(port)
        return original_listen_success(self, port)

    def build_protocol(factory, addr):
        protocol = original_build(factory, addr)
        channels = factory.server.django_asgi_channels
        channels.add(protocol)
        lost = protocol.connectionLost

        def connection_lost(reason):
            channels.discard(protocol)
            return lost(reason)

        protocol.connectionLost = connection_lost
        return protocol

    def drain(self):
        from twisted.internet import reactor

        django_asgi_layers.start_draining()
        for port in self.django_asgi_ports:
            port.stopListening()
        started = time.monotonic()
        give_up = started + float(os.environ.get("DJANGO_ASGI_GRACEFUL_TIMEOUT", "20"))

        # Twisted hands out a wrapper (_GenericHTTPChannelProtocol) around the HTTPChannel.
        def channel(protocol):
            return getattr(protocol, "_channel", protocol)

        def busy(protocol):
            if getattr(channel(protocol), "requests", None):
                return True
            # Upgraded to a WebSocket: the layer closes it (1012) and the close handshake ends it.
            transport = getattr(channel(protocol), "transport", None)
            if isinstance(getattr(transport, "protocol", None), ws_protocol.WebSocketProtocol):
                return True
            handle = getattr(getattr(channel(protocol), "transport", None), "getHandle", None)
            return handle is not None and bytes_waiting(handle()) > 0

        def poll():
            now = time.monotonic()
            if now >= started + GRACE:
                for protocol in [p for p in self.django_asgi_channels if not busy(p)]:
                    transport = getattr(channel(protocol), "transport", None)
                    if transport is not None:
                        transport.loseConnection()
            if (not self.django_asgi_channels and not open_websockets(self)) or now >= give_up:
                reactor.stop()
            else:
                reactor.callLater(0.02, poll)

        poll()

    def run(self):
        from twisted.internet import reactor

        self.django_asgi_ports = []
        self.django_asgi_channels = set()
        self.django_asgi_draining = False

        def on_sigterm(*_):
            # A second SIGTERM (systemd's, after a manual kill) must not start a second drain.
            if not self.django_asgi_draining:
                self.django_asgi_draining = True
                reactor.callFromThread(drain, self)

        # After Twisted installed its own handlers (which stop the reactor at once).
        reactor.callWhenRunning(signal.signal, signal.SIGTERM, on_sigterm)
        return original_run(self)

    ws_protocol.WebSocketProtocol.serverClose = server_close
    Server.listen_success = listen_success
    Server.run = run
    http_protocol.HTTPFactory.buildProtocol = build_protocol
    _patched.add("daphne")


_PATCHES = {"uvicorn": patch_uvicorn, "hypercorn": patch_hypercorn, "daphne": patch_daphne}

# Worker processes that Uvicorn and Hypercorn spawn import this file again as __mp_main__.
if os.environ.get(_SERVER_ENV) in _PATCHES:
    _PATCHES[os.environ[_SERVER_ENV]]()


# Gunicorn's arbiter tells systemd READY=1 as soon as it listens, before any worker has loaded the
# app: `systemctl restart` (a deploy's, a person's) returns while nothing serves yet, and a restart
# right after it stops workers still booting, again and again, while connections wait in the
# socket's queue (10 restarts 0.5 s apart kept a client waiting past 10 s). Here READY=1 comes from
# the first worker that has loaded the app, just before it serves (the unit has NotifyAccess=all);
# a worker that cannot load it never says it, so a start fails as the release does.
def patch_gunicorn_ready():
    from gunicorn import systemd as gunicorn_systemd

    if "gunicorn_ready" in _patched:
        return
    arbiter_notify = gunicorn_systemd.sd_notify

    def sd_notify(state, logger, unset_environment=False):
        if state.startswith("READY=1"):
            return
        return arbiter_notify(state, logger, unset_environment)

    gunicorn_systemd.sd_notify = sd_notify
    _patched.add("gunicorn_ready")


def notify_ready(worker):
    """READY=1 to systemd, from a worker whose app is loaded (the worker classes' run())."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(b"READY=1")
    except OSError as exc:
        worker.log.warning("Could not tell systemd the worker is ready: %s", exc)


# Gunicorn's stop signals for a worker: SIGTERM drains, SIGINT and SIGQUIT stop at once.
_GUNICORN_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def stops_queued_for_arbiter(arbiter_handler):
    """Right after the fork a worker still runs the arbiter's handler (``arbiter_handler``, read
    before the worker replaced it), which queues a signal for the arbiter in this process's copy of
    its queue: a stop sent to a worker that young was lost. The stop signals found in that queue."""
    queue = getattr(getattr(arbiter_handler, "__self__", None), "SIG_QUEUE", None)
    found = []
    while queue is not None and not queue.empty():
        signum = queue.get_nowait()
        if signum in _GUNICORN_STOPS:
            found.append(signum)
    return found


try:
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError:  # another server's venv
    pass
else:
    patch_uvicorn()
    patch_gunicorn_ready()

    class UvicornWorker(_UvicornWorker):
        """uvicorn_worker.UvicornWorker with the graceful shutdown above, which tells systemd it is
        ready once the app is loaded."""

        def init_signals(self):
            arbiter_handler = signal.getsignal(signal.SIGTERM)
            super().init_signals()  # stop signals take their default action until uvicorn serves
            for signum in stops_queued_for_arbiter(arbiter_handler)[:1]:
                signal.raise_signal(signum)  # ends the worker before it serves

        def run(self):
            notify_ready(self)
            return super().run()

try:
    from gunicorn.asgi import protocol as _gunicorn_asgi_protocol
    from gunicorn.workers.gasgi import ASGIWorker as _GunicornASGIWorker
except ImportError:  # another server's venv
    pass
else:
    _gunicorn_serve_http_request = _gunicorn_asgi_protocol.ASGIProtocol._serve_http_request

    async def _counted_serve_http_request(self, *args, **kwargs):
        # The connection loop decides keep-alive right after this returns, in the same step of the
        # event loop: while the count is 0 no response is between its headers and that decision.
        worker = self.worker
        worker.django_asgi_busy += 1
        worker.django_asgi_served += 1
        if worker.django_asgi_served >= worker.django_asgi_max_requests:
            worker.log.info("Autorestarting worker after current request.")
            worker.handle_exit_signal()
        try:
            return await _gunicorn_serve_http_request(self, *args, **kwargs)
        finally:
            self.worker.django_asgi_busy -= 1

    _gunicorn_asgi_protocol.ASGIProtocol._serve_http_request = _counted_serve_http_request
    patch_gunicorn_ready()

    class GunicornASGIWorker(_GunicornASGIWorker):
        """Gunicorn's asgi worker announces keep-alive in a response's headers while it runs, but
        once SIGTERM cleared its "alive" flag it closes the connection after that response anyway:
        a client sending its next request on it fails (a POST cannot be retried). Here SIGTERM
        stops accepting and makes every response say Connection: close, and the flag is cleared
        only at a moment no response is in progress (or at the graceful timeout), so a response
        that promised keep-alive is never followed by a close."""

        django_asgi_busy = 0
        django_asgi_stopping = False
        django_asgi_early_stops = ()
        django_asgi_served = 0

        # --max-requests: gunicorn clears "alive" after the last request, so a response still in
        # progress on another connection, which promised keep-alive, is followed by a close. The
        # worker recycles by the same graceful stop as on SIGTERM instead (_counted_serve_http_request).
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.django_asgi_max_requests = self.max_requests
            self.max_requests = sys.maxsize

        # A stop signal that reached this worker while it booted was lost: right after the fork
        # (stops_queued_for_arbiter), and while the app loads, when uvloop only keeps it, acting on
        # it once a later signal wakes the running loop. The worker then served until the arbiter's
        # graceful timeout ran out (the restart blocked for 20 s) and was killed, resetting its
        # keep-alive connections under their clients. Here such a signal is noted, and the worker
        # exits before it serves (_serve); once the loop runs, the loop handles them.
        def init_signals(self):
            arbiter_handler = signal.getsignal(signal.SIGTERM)
            self.django_asgi_early_stops = []
            for signum in self.SIGNALS:
                signal.signal(signum, self._note_early_stop if signum in _GUNICORN_STOPS else signal.SIG_DFL)
            self.loop.add_signal_handler(signal.SIGUSR1, self.handle_usr1_signal)
            self.loop.add_signal_handler(signal.SIGWINCH, self.handle_winch_signal)
            self.loop.add_signal_handler(signal.SIGABRT, self.handle_abort_signal)
            self.django_asgi_early_stops += stops_queued_for_arbiter(arbiter_handler)

        def _note_early_stop(self, signum, _frame):
            self.django_asgi_early_stops.append(signum)

        async def _serve(self):
            self.loop.add_signal_handler(signal.SIGTERM, self.handle_exit_signal)
            self.loop.add_signal_handler(signal.SIGINT, self.handle_quit_signal)
            self.loop.add_signal_handler(signal.SIGQUIT, self.handle_quit_signal)
            if self.django_asgi_early_stops:
                self.log.info("Stop signal received while booting: exiting before serving")
                return None
            return await super()._serve()

        def run(self):
            notify_ready(self)
            return super().run()

        def handle_exit_signal(self):
            if self.django_asgi_stopping:
                return
            self.django_asgi_stopping = True
            django_asgi_layers.start_draining()
            for server in self.servers:
                server.close()
            give_up = self.loop.time() + self.cfg.graceful_timeout

            def stop_when_no_response_in_progress():
                if self.django_asgi_busy == 0 or self.loop.time() >= give_up:
                    _GunicornASGIWorker.handle_exit_signal(self)
                else:
                    self.loop.call_later(0.01, stop_when_no_response_in_progress)

            stop_when_no_response_in_progress()


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else ""
    if server not in _PATCHES:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(_PATCHES)} ARGS...")
    os.environ[_SERVER_ENV] = server
    _PATCHES[server]()
    sys.argv = [server] + sys.argv[2:]
    if server == "uvicorn":
        import uvicorn.main

        uvicorn.main.main()
    elif server == "hypercorn":
        from hypercorn.__main__ import main as hypercorn_main

        sys.exit(hypercorn_main())
    else:
        from daphne.cli import CommandLineInterface

        CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
