#!/usr/bin/env python3
"""Helpers that bench/lan runs *inside* a lab namespace: the naive-baseline client and a TCP probe.

Why separate: these run as their own processes in a peer/master namespace (started with
`ip netns exec`), so they must be plain scripts with no state shared with the harness.

- `get BASE_URL LIST DST`: the naive baseline. Downloads every file in LIST (JSON [[rel, size]...])
  from one plain HTTP server, one after another, into DST, and prints a JSON progress line
  {"t": seconds, "bytes_done": n, "bytes_total": n} about twice a second. Retries are bounded.
  The socket timeout is long (300 s): with 24 flows through one small drop-tail queue a TCP flow
  can sit in exponential RTO backoff for over a minute, which is slow, not failed.
- `probe-recv ADDR PORT SECONDS` / `probe-send ADDR PORT SECONDS`: one TCP stream for a few seconds;
  the receiver prints the goodput (payload bits/s) from accept to EOF, which is what the
  harness reports as the measured goodput factor of a shaped link.
"""

import json
import os
import socket
import sys
import time
import urllib.parse
import urllib.request

CHUNK = 1 << 20


def naive_get(base, list_path, dst):
    with open(list_path) as f:
        files = json.load(f)
    total = sum(size for _, size in files)
    done = 0
    t0 = time.monotonic()
    last = 0.0

    def report(force=False):
        nonlocal last
        now = time.monotonic()
        if force or now - last >= 0.5:
            last = now
            print(json.dumps({"t": round(now - t0, 3), "bytes_done": done, "bytes_total": total}), flush=True)

    report(True)
    for rel, size in files:
        url = base.rstrip("/") + "/" + urllib.parse.quote(rel)
        path = os.path.join(dst, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for attempt in range(4):  # bounded retries
            got = 0
            try:
                with urllib.request.urlopen(url, timeout=300) as resp, open(path, "wb") as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        got += len(block)
                        done += len(block)
                        report()
                if got == size:
                    break
                raise OSError(f"short read {got}/{size}")
            except OSError as e:
                done -= got
                print(f"naive: {rel}: attempt {attempt + 1} failed: {e}", file=sys.stderr, flush=True)
                time.sleep(0.5 * (attempt + 1))
        else:
            print(f"naive: giving up on {rel}", file=sys.stderr, flush=True)
            return 1
    report(True)
    return 0


def probe_recv(addr, port, seconds):
    """Payload bits/s from accept to EOF. Counting the whole connection (not a window after a
    warm-up) keeps a CPU-starved receiver from over-counting data that queued in its socket buffer;
    slow start is negligible at LAN round-trip times."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    print("listening", flush=True)
    srv.settimeout(30)
    conn, _ = srv.accept()
    conn.settimeout(30)
    t0 = time.monotonic()
    total = 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        total += len(b)
    t1 = time.monotonic()
    if t1 - t0 < 1.0:
        print(json.dumps({"goodput_bps": None}), flush=True)
        return 1
    print(json.dumps({"goodput_bps": total * 8 / (t1 - t0), "bytes": total, "seconds": t1 - t0}), flush=True)
    return 0


def probe_send(addr, port, seconds):
    deadline = time.monotonic() + 10
    while True:  # bounded: the receiver may not be listening yet
        try:
            s = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    block = os.urandom(1 << 20)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(block)
    s.close()
    return 0


def main(argv):
    if len(argv) == 4 and argv[0] == "get":
        return naive_get(argv[1], argv[2], argv[3])
    if len(argv) == 4 and argv[0] == "probe-recv":
        return probe_recv(argv[1], int(argv[2]), float(argv[3]))
    if len(argv) == 4 and argv[0] == "probe-send":
        return probe_send(argv[1], int(argv[2]), float(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
