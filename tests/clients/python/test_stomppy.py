"""stomp.py (a third-party STOMP client, not written for Stompbox) against the stompbox binary
with the default configuration: only free ports, the TCP listener, and queue mode on
/queue/** for the ack/nack tests.

Each scenario runs over raw TCP (``stomp.Connection12``) and over WebSocket
(``stomp.WSStompConnection``), connecting with login/passcode as stomp.py's own examples and
test suite do. Every wait has a deadline.
"""

import queue
import threading
import time
import unittest
import uuid

import stomp

from broker import Broker

#: How long any single expected event may take.
WAIT_S = 5.0

BROKER = None


def setUpModule():
    global BROKER
    BROKER = Broker()


def tearDownModule():
    BROKER.stop()


def fresh(prefix):
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def until(cond, what, timeout=WAIT_S):
    """Polls ``cond`` until it is true or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # poll interval of a deadline-bounded wait


class Recorder(stomp.ConnectionListener):
    """Everything a connection sees, in queues taken with deadlines."""

    def __init__(self):
        self.connected = queue.Queue()
        self.messages = queue.Queue()
        self.receipts = queue.Queue()
        self.errors = queue.Queue()
        self.heartbeats_in = 0
        self.heartbeats_out = 0
        self.disconnected = threading.Event()

    def on_connected(self, frame):
        self.connected.put(frame)

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        self.errors.put(frame)

    def on_heartbeat(self):
        self.heartbeats_in += 1

    def on_send(self, frame):
        # stomp.py's heart-beat loop transmits a frame without a command.
        if frame.cmd is None:
            self.heartbeats_out += 1

    def on_disconnected(self):
        self.disconnected.set()

    @staticmethod
    def take(q, what, timeout=WAIT_S):
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


class Scenarios:
    """The scenarios, run by a subclass per transport (unittest collects only those)."""

    def open(self, heartbeats=(0, 0), binary=False):
        raise NotImplementedError

    def connect(self, heartbeats=(0, 0), binary=False):
        conn = self.open(heartbeats, binary)
        rec = Recorder()
        conn.set_listener("recorder", rec)
        conn.connect("guest", "guest", wait=False)
        self.addCleanup(self.close, conn, rec)
        frame = self._connected(rec)
        return conn, rec, frame

    def _connected(self, rec):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                return rec.connected.get(timeout=0.05)
            except queue.Empty:
                pass
            if not rec.errors.empty():
                err = rec.errors.get()
                raise AssertionError(f"ERROR instead of CONNECTED: {err.headers} {err.body!r}")
        raise AssertionError("timed out waiting for CONNECTED")

    @staticmethod
    def close(conn, rec):
        if conn.is_connected() and not rec.disconnected.is_set():
            conn.disconnect()

    def subscribed(self, conn, rec, dest, ack="auto"):
        rid = fresh("sub")
        conn.subscribe(dest, id=fresh("s"), ack=ack, headers={"receipt": rid})
        self.assertEqual(Recorder.take(rec.receipts, "SUBSCRIBE receipt"), rid)

    def send_with_receipt(self, conn, rec, dest, body, **headers):
        rid = fresh("r")
        conn.send(dest, body, headers={"receipt": rid, **headers})
        self.assertEqual(Recorder.take(rec.receipts, "SEND receipt"), rid)

    def test_connects_with_credentials_under_defaults(self):
        _, _, frame = self.connect()
        self.assertEqual(frame.headers["version"], "1.2")
        self.assertNotIn("user-name", frame.headers, "the login is not an identity")

    def test_text_and_binary_bodies_with_receipts(self):
        conn, rec, _ = self.connect(binary=True)
        dest = fresh("/topic/stomppy.bodies")
        self.subscribed(conn, rec, dest)
        self.send_with_receipt(conn, rec, dest, "héllo wörld ✓")
        m = Recorder.take(rec.messages, "text MESSAGE")
        self.assertEqual(m.body, "héllo wörld ✓".encode())
        binary = bytes(range(256)) * 4
        self.send_with_receipt(conn, rec, dest, binary, **{"content-type": "application/octet-stream"})
        m = Recorder.take(rec.messages, "binary MESSAGE")
        self.assertEqual(m.body, binary)
        self.assertEqual(m.headers["content-type"], "application/octet-stream")

    def test_ack_and_nack_on_a_queue_destination(self):
        conn, rec, _ = self.connect()
        dest = fresh("/queue/stomppy.acks")
        self.subscribed(conn, rec, dest, ack="client-individual")
        self.send_with_receipt(conn, rec, dest, "first")
        m = Recorder.take(rec.messages, "MESSAGE")
        self.assertEqual(m.body, b"first")
        conn.nack(m.headers["ack"], receipt="nack-1")
        self.assertEqual(Recorder.take(rec.receipts, "NACK receipt"), "nack-1")
        again = Recorder.take(rec.messages, "redelivery")
        self.assertEqual(again.body, b"first")
        self.assertEqual(again.headers.get("redelivered"), "true")
        conn.ack(again.headers["ack"], receipt="ack-1")
        self.assertEqual(Recorder.take(rec.receipts, "ACK receipt"), "ack-1")
        self.send_with_receipt(conn, rec, dest, "second")
        m = Recorder.take(rec.messages, "next MESSAGE")
        self.assertEqual(m.body, b"second", "the acknowledged message is not redelivered")
        self.assertNotIn("redelivered", m.headers)

    def test_transactions(self):
        conn, rec, _ = self.connect()
        dest = fresh("/topic/stomppy.tx")
        self.subscribed(conn, rec, dest)
        tx = conn.begin()
        conn.send(dest, "in-tx-1", transaction=tx)
        conn.send(dest, "in-tx-2", transaction=tx)
        # A message outside the transaction overtakes the transaction's.
        self.send_with_receipt(conn, rec, dest, "outside")
        self.assertEqual(Recorder.take(rec.messages, "outside").body, b"outside")
        conn.commit(tx)
        self.assertEqual(Recorder.take(rec.messages, "committed 1").body, b"in-tx-1")
        self.assertEqual(Recorder.take(rec.messages, "committed 2").body, b"in-tx-2")
        aborted = conn.begin()
        conn.send(dest, "never", transaction=aborted)
        conn.abort(aborted)
        self.send_with_receipt(conn, rec, dest, "after-abort")
        self.assertEqual(Recorder.take(rec.messages, "after abort").body, b"after-abort")
        self.assertTrue(rec.messages.empty(), "nothing from the aborted transaction")

    def test_heartbeats_keep_an_idle_connection_up(self):
        conn, rec, frame = self.connect(heartbeats=(1000, 1000))
        # The broker answers its floor; by the max() rule both sides use stomp.py's 1 s.
        self.assertEqual(frame.headers["heart-beat"], "1000,1000")
        dest = fresh("/topic/stomppy.hb")
        self.subscribed(conn, rec, dest)
        before_in, before_out = rec.heartbeats_in, rec.heartbeats_out
        # Idle: only heart-beats flow, about 4 s, twice past the 2 s after which the broker
        # drops a client promising 1 s heart-beats that sends none.
        until(
            lambda: rec.heartbeats_in - before_in >= 4 and rec.heartbeats_out - before_out >= 4,
            "four heart-beats each way",
            timeout=10.0,
        )
        self.assertFalse(rec.disconnected.is_set(), "no disconnect while idle")
        self.assertTrue(conn.is_connected())
        self.assertTrue(rec.errors.empty())
        self.send_with_receipt(conn, rec, dest, "still alive")
        self.assertEqual(Recorder.take(rec.messages, "MESSAGE").body, b"still alive")


class TcpTests(Scenarios, unittest.TestCase):
    """stomp.py over raw STOMP on TCP."""

    def open(self, heartbeats=(0, 0), binary=False):
        return stomp.Connection12(
            [("127.0.0.1", BROKER.tcp_port)],
            heartbeats=heartbeats,
            auto_decode=False,
            reconnect_attempts_max=1,
        )


class WebSocketTests(Scenarios, unittest.TestCase):
    """stomp.py's WSStompConnection. Binary bodies need its ``binary_mode=True``."""

    def open(self, heartbeats=(0, 0), binary=False):
        return stomp.WSStompConnection(
            [("127.0.0.1", BROKER.ws_port)],
            ws_path="/ws",
            heartbeats=heartbeats,
            auto_decode=False,
            binary_mode=binary,
            reconnect_attempts_max=1,
        )

    def test_a_binary_body_in_text_mode_gets_an_error_saying_what_to_change(self):
        conn, rec, _ = self.connect(binary=False)
        conn.send(fresh("/topic/stomppy.textmode"), b"\xff\xfe not UTF-8")
        err = Recorder.take(rec.errors, "ERROR frame")
        self.assertEqual(err.headers["message"], "invalid UTF-8 in text message")
        self.assertIn(b"binary WebSocket messages", err.body)
        self.assertTrue(rec.disconnected.wait(WAIT_S), "the broker closes the connection")


if __name__ == "__main__":
    unittest.main()
