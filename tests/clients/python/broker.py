"""Starts and stops the real ``stompbox`` binary for the stomp.py tests.

One broker per test run, on free 127.0.0.1 ports (WebSocket and TCP), with a generated
config: the defaults plus the ports and queue mode on ``/queue/**``. The binary is
``$STOMPBOX_BIN``, else the repository's debug build. Waits use deadlines, not sleeps.
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

#: How long the broker may take to answer /healthz after it is spawned.
READY_DEADLINE_S = 10.0
#: How long SIGTERM may take before SIGKILL.
EXIT_DEADLINE_S = 5.0


def binary():
    path = os.environ.get("STOMPBOX_BIN") or os.path.join(REPO, "target", "debug", "stompbox")
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise RuntimeError(
            f"stompbox binary not found at {path}: build it (cargo build --bin stompbox) "
            "or point STOMPBOX_BIN at one"
        )
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """\
[server]
websocket = "127.0.0.1:{ws}"
tcp = "127.0.0.1:{tcp}"
shutdown_grace_ms = 2000

[[destinations]]
pattern = "/queue/**"
mode = "queue"
"""


class Broker:
    """A running stompbox process; its output goes to a log file kept for failures."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="stompbox-stomppy-")
        self.ws_port = free_port()
        self.tcp_port = free_port()
        self.config_path = os.path.join(self.dir, "broker.toml")
        with open(self.config_path, "w") as f:
            f.write(CONFIG.format(ws=self.ws_port, tcp=self.tcp_port))
        self.log_path = os.path.join(self.dir, "broker.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary(), "--config", self.config_path, "-v"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_DEADLINE_S
        problem = "no answer yet"
        delay = 0.01
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stompbox exited before becoming ready:\n{self.log()}")
            try:
                url = f"http://127.0.0.1:{self.ws_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
                    problem = f"/healthz answered {r.status}"
            except OSError as e:
                problem = str(e)
            time.sleep(delay)  # back-off between polls of a deadline-bounded wait
            delay = min(delay * 2, 0.1)
        raise RuntimeError(f"stompbox not ready within {READY_DEADLINE_S} s ({problem}):\n{self.log()}")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-64 * 1024:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(EXIT_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
