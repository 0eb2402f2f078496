"""``linewatch run --workers N``: N runtime processes on one host, started, watched and stopped together.

Each worker is an ordinary ``linewatch run --worker K`` process with its own client id, outbox, learned
thresholds, metrics and status ports and share of the input (:func:`edge_runtime.config.for_worker`); which streams a worker
owns comes from the messaging layer (``{worker}`` in the input topics: NATS partitions or static filters; or an
MQTT 5 shared subscription), never from this process. The supervisor:

- gives each worker its own systemd notification socket, so it knows when every worker is ready
  (then it says ``READY=1`` itself) and when one stops pinging its watchdog (then it kills that worker);
- restarts a worker that exits or is killed, after a back-off that doubles from 1 s to 30 s (reset once
  the worker has run for a minute), and counts the restarts in its ``STATUS=`` line and log;
- passes SIGHUP on to every worker (``systemctl reload``: each reloads its bundles);
- on SIGTERM or SIGINT, passes SIGTERM to every worker, waits for them within their own shutdown
  budget, then kills what is left.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime import systemd

log = logging.getLogger("linewatch.workers")
BACKOFF_S = (1.0, 30.0)  # first and largest delay before a worker is started again
STEADY_S = 60.0  # a worker that ran this long starts the back-off over
WORKER_ENV, WORKERS_ENV = "LINEWATCH_WORKER", "LINEWATCH_WORKERS"  # set for each worker: its index and how many there are


@dataclass
class Worker:
    """One worker process and what its notification socket said."""

    index: int
    argv: list[str]
    socket_path: Path
    sock: socket.socket
    process: subprocess.Popen | None = None
    started: float = 0.0
    ready: bool = False
    last_ping: float = 0.0
    restarts: int = 0
    delay: float = BACKOFF_S[0]
    due: float = 0.0  # when a worker that ended may start again
    env: dict = field(default_factory=dict)


class Supervisor:
    """Runs ``argv_for(k)`` for k in 0..n-1 until told to stop (see the module docstring)."""

    def __init__(self, argv_for, workers: int, shutdown_timeout_s: float) -> None:
        """``argv_for(k)``: the command line of worker ``k``; ``shutdown_timeout_s``: each worker's own stop budget."""
        self.folder = Path(tempfile.mkdtemp(prefix="linewatch-workers-"))
        self.shutdown_timeout_s = shutdown_timeout_s
        self.stopping = False
        self.announced = False
        self.watchdog_s = systemd.watchdog_interval()  # half of WatchdogSec, or None
        self.selector = selectors.DefaultSelector()
        self.workers = [self._worker(k, workers, argv_for(k)) for k in range(workers)]

    def _worker(self, k: int, count: int, argv: list[str]) -> Worker:
        path = self.folder / f"notify-{k}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        sock.setblocking(False)
        env = {name: value for name, value in os.environ.items() if name not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = str(path)
        env[WORKER_ENV], env[WORKERS_ENV] = str(k), str(count)  # for the worker's status page
        worker = Worker(k, argv, path, sock, env=env)
        self.selector.register(sock, selectors.EVENT_READ, worker)
        return worker

    def run(self) -> int:
        """Start every worker and supervise them until SIGTERM or SIGINT; returns the exit status (0 after a clean stop)."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._reload)
        try:
            for worker in self.workers:
                self._start(worker)
            while not self.stopping:
                self._turn()
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for worker in self.workers:
                worker.sock.close()
                worker.socket_path.unlink(missing_ok=True)
            self.folder.rmdir()

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _reload(self, signum, frame) -> None:
        """SIGHUP (``systemctl reload``): every running worker reloads its bundles."""
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGHUP)

    def _start(self, worker: Worker) -> None:
        worker.process = subprocess.Popen(worker.argv, env=worker.env)
        worker.started = worker.last_ping = time.monotonic()
        worker.ready = False
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _turn(self) -> None:
        """Read notifications for up to 0.5 s, then restart what ended and kill what hangs."""
        for key, _ in self.selector.select(timeout=0.5):
            self._read(key.data)
        now = time.monotonic()
        for worker in self.workers:
            code = worker.process.poll() if worker.process else None
            if worker.process is not None and code is not None and not self.stopping:
                worker.delay = BACKOFF_S[0] if now - worker.started >= STEADY_S else min(worker.delay * 2, BACKOFF_S[1])
                worker.due = now + worker.delay
                worker.process = None
                worker.restarts += 1
                log.error("worker %d exited with status %d; starting it again in %.0f s (restart %d)", worker.index, code,
                          worker.delay, worker.restarts)
                self._status()
            elif worker.process is None and now >= worker.due and not self.stopping:
                self._start(worker)
            elif self.watchdog_s and worker.ready and code is None and now - worker.last_ping > 2 * self.watchdog_s:
                log.error("worker %d stopped pinging its watchdog for %.0f s: killing it", worker.index, now - worker.last_ping)
                worker.process.kill()
        if self.watchdog_s and self.announced and all(w.process is None or now - w.last_ping <= 2 * self.watchdog_s for w in self.workers):
            systemd.notify("WATCHDOG=1")

    def _read(self, worker: Worker) -> None:
        while True:
            try:
                message = worker.sock.recv(4096).decode(errors="replace")
            except BlockingIOError:
                return
            for line in message.splitlines():
                if line == "READY=1":
                    worker.ready = True
                    log.info("worker %d ready", worker.index)
                    self._status()
                elif line == "WATCHDOG=1":
                    worker.last_ping = time.monotonic()

    def _status(self) -> None:
        ready = sum(w.ready and w.process is not None for w in self.workers)
        restarts = sum(w.restarts for w in self.workers)
        if not self.announced and ready == len(self.workers):
            self.announced = True
            systemd.notify("READY=1")
            log.info("all %d workers ready", ready)
        systemd.notify(f"STATUS={ready} of {len(self.workers)} workers ready, {restarts} restart(s)")

    def _shutdown(self) -> int:
        systemd.notify("STOPPING=1")
        running = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout_s + 5.0
        failed = 0
        for worker in running:
            try:
                code = worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %.0f s: killed", worker.index, self.shutdown_timeout_s + 5.0)
                worker.process.kill()
                code = worker.process.wait()
            failed += code != 0
        log.info("%d worker(s) stopped", len(running))
        return 1 if failed else 0
