"""Test helpers: a real mosquitto on a free loopback port, a NATS cluster speaking MQTT, a collecting subscriber, a publisher."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from helpers import wait_for
from linewatch.localbroker import NatsCluster, find_mosquitto, find_nats_server, free_port, loopback_config, wait_for_port  # noqa: F401

MOSQUITTO = find_mosquitto()
NATS_SERVER = find_nats_server()


class Mosquitto:
    """A mosquitto process with a config written by the test; ``extra`` lines are appended."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "", anonymous: bool = True) -> None:
        self.folder, self.port = folder, port or free_port()
        self.config = folder / f"mosquitto-{self.port}.conf"
        # As root mosquitto drops to the 'mosquitto' user, which cannot read the test's private files.
        extra = ("user root\n" if os.geteuid() == 0 else "") + extra
        self.config.write_text(loopback_config(self.port, anonymous, extra))
        self.process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        """Start and wait until the port accepts connections."""
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, self.process, timeout=10)
        except Exception as error:
            raise RuntimeError(f"mosquitto did not start: {error}: {self.process.stderr.read().decode()}") from None
        return self

    def stop(self) -> None:
        """Terminate the broker."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


def client(port: int, client_id: str = "", protocol: int = mqtt.MQTTv5, **tls) -> mqtt.Client:
    """A connected paho client with its network loop running (``protocol=mqtt.MQTTv311`` for NATS)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(5), "test client could not connect"
    return c


class Collector:
    """Subscribes to topics and keeps every message (topic, decoded JSON or raw bytes)."""

    def __init__(self, port: int, *topics: str, protocol: int = mqtt.MQTTv5) -> None:
        self.messages: list[tuple[str, object, bool]] = []
        self.received_at: list[float] = []  # wall clock of each message's arrival
        self.lock = threading.Lock()
        self.client = client(port, protocol=protocol)
        self.client.on_message = self._on_message
        answered = threading.Semaphore(0)
        self.client.on_subscribe = lambda *args: answered.release()
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        for topic in topics:  # every SUBACK back: from here on no event published for these topics is missed
            assert answered.acquire(timeout=10), f"the broker did not answer the subscription to {topic}"

    def _on_message(self, client, userdata, message) -> None:
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            body = message.payload
        with self.lock:
            self.messages.append((message.topic, body, message.retain))
            self.received_at.append(time.time())

    def events(self, kind: str | None = None) -> list[dict]:
        """Event payloads (schema linewatch.event/1), optionally of one kind."""
        with self.lock:
            return [b for _, b, _ in self.messages if isinstance(b, dict) and b.get("schema") == "linewatch.event/1"
                    and (kind is None or b["kind"] == kind)]

    def on(self, topic: str) -> list:
        """Payloads received on one topic."""
        with self.lock:
            return [b for t, b, _ in self.messages if t == topic]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Poll until ``predicate(self)`` is true."""
        return wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class FaultProxy:
    """A TCP proxy in front of a broker that can freeze either direction and cut every connection.

    Frozen bytes are neither read nor forwarded; a cut closes both sides at once, so whatever was
    on its way (publishes upstream, acknowledgements downstream) is lost, as when a broker dies.
    """

    def __init__(self, upstream_port: int) -> None:
        import socket

        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up, self.down = threading.Event(), threading.Event()  # set: that direction flows
        self.up.set()
        self.down.set()
        self.pairs: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self, up: bool = True, down: bool = True) -> None:
        """Stop forwarding client->broker (``up``) and/or broker->client (``down``)."""
        if up:
            self.up.clear()
        if down:
            self.down.clear()

    def thaw(self) -> None:
        """Forward both directions again."""
        self.up.set()
        self.down.set()

    def cut(self) -> None:
        """Close every connection; bytes in transit are lost. New connections are accepted."""
        import socket

        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Cut and stop listening."""
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client_sock, _ = self.listener.accept()
                broker_sock = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            with self.lock:
                self.pairs.append((client_sock, broker_sock))
            threading.Thread(target=self._pump, args=(client_sock, broker_sock, self.up), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker_sock, client_sock, self.down), daemon=True).start()

    @staticmethod
    def _pump(source, target, flowing: threading.Event) -> None:
        while True:
            flowing.wait()
            try:
                data = source.recv(65536)
                if not data:
                    break
                flowing.wait()  # frozen while this read was waiting: hold the bytes (a cut loses them)
                target.sendall(data)
            except OSError:
                break
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()


def make_pki(folder: Path, server_names: str = "DNS:localhost,IP:127.0.0.1", ca: str = "ca") -> Path:
    """A CA (``<ca>.crt``), a server certificate for ``server_names`` and a client certificate, made with openssl."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make test certificates"
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args):
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=linewatch-test-{ca}")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=linewatch-test-server")
    (folder / "san.ext").write_text(f"subjectAltName={server_names}\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", "server.crt", "-days", "2",
        "-extfile", "san.ext")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=gateway")
    ssl("x509", "-req", "-in", "client.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", "client.crt", "-days", "2")
    return folder


def tls_listener(pki: Path, ca: str = "ca") -> str:
    """Lines of mosquitto config that make the test listener speak TLS with ``pki``'s server certificate."""
    return f"cafile {pki / (ca + '.crt')}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
