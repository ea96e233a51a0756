#!/usr/bin/env python3
"""Resident memory of a stompbox binary while it verifies passwords flat out.

Starts BINARY with one static user (default argon2 parameters: 19 MiB, t=2), then, ROUNDS
times, makes 64 concurrent wrong logins with unknown names from 16 loopback addresses
(4 each, so neither the per-address share nor the throttle refuses any) and prints VmRSS.

    python3 bench/auth/login_memory.py target/debug/stompbox 5

Linux only (/proc and 127.0.0.0/8 as loopback sources).
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    hashed = subprocess.run([binary, "hash-password"], input=b"pw\n", capture_output=True, check=True)
    http, tcp = free_port(), free_port()
    cfg = os.path.join(tempfile.mkdtemp(), "broker.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[server]\nwebsocket = "127.0.0.1:{http}"\ntcp = "127.0.0.1:{tcp}"\n'
            f'[[auth.users]]\nname = "bob"\npassword_hash = "{hashed.stdout.decode().strip()}"\n'
        )
    broker = subprocess.Popen([binary, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rss_mib():
        with open(f"/proc/{broker.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return 0.0

    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", tcp)).close()
                break
            except OSError:
                time.sleep(0.05)
        start = peak = rss_mib()

        def login(source, name):
            s = socket.socket()
            s.bind((source, 0))
            s.connect(("127.0.0.1", tcp))
            s.sendall(f"CONNECT\naccept-version:1.2\nlogin:{name}\npasscode:wrong\n\n\0".encode())
            s.settimeout(60)
            try:
                while b"\0" not in s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()

        for r in range(rounds):
            clients = [
                threading.Thread(target=login, args=(f"127.0.0.{10 + (r * 16 + a) % 200}", f"ghost{r}-{a}-{i}"))
                for a in range(16)
                for i in range(4)
            ]
            for c in clients:
                c.start()
            while any(c.is_alive() for c in clients):
                peak = max(peak, rss_mib())
                time.sleep(0.02)
            print(f"round {r}: VmRSS {rss_mib():.1f} MiB (start {start:.1f}, peak {peak:.1f})", flush=True)
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
