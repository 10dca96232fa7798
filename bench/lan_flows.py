#!/usr/bin/env python3
"""bench/lan_flows.py: what N parallel TCP flows do to one shaped link and its tail-drop queue.

Why: lanscatter moves data over up to 8 parallel chunk flows per link (8 slots), and issue 19 asks
what those do in a shallow (20 ms) tail-drop queue with BBR and with reno, and whether per-flow
pacing (SO_MAX_PACING_RATE) or fewer flows would help, before anyone changes the engine. This
measures exactly that in bench/lan's lab (lan_net: namespaces, tbf, framing, burst): one sender on
the master's host, one receiver on a peer, for each congestion control x flow layout:
aggregate goodput / nominal, the sender's retransmitted segments (/proc/net/snmp of its
namespace) and tbf drops of the link. The queue is the receiver's switch port (--queue remote, the
default: a drop there is a loss TCP must repair) or the sender's own egress (--queue local: like a
NIC, where tbf hands a dropped whole GSO packet back to TCP, which re-sends it without counting a
loss). Needs root, like bench/lan.

  bench/lan_flows.py --rate 50M --burst 1ms --seconds 8          # reno and bbr, 1 / 8 / 8-paced
  bench/lan_flows.py --cc bbr --flows 8 --pace 0.97              # one layout

Inside the namespaces it runs itself as `recv ADDR PORT N` / `send ADDR PORT N SECONDS PACE_BPS`.
"""

import argparse
import json
import os
import selectors
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lan_net  # noqa: E402
from lan_net import Host, Lab, MASTER_ADDR, peer_addr  # noqa: E402

SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)  # Linux; bytes per second
PORT = 9100


def recv(addr, port, n):
    """Accept n flows, count payload bytes until all close; print aggregate bits/s."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(n)
    srv.settimeout(30)
    print("listening", flush=True)
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(n):
        c, _ = srv.accept()
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        conns.append(c)
    t0 = time.monotonic()
    total, open_n = 0, n
    while open_n:
        for key, _ in sel.select(timeout=30):
            b = key.fileobj.recv(1 << 20)
            if b:
                total += len(b)
            else:
                sel.unregister(key.fileobj)
                open_n -= 1
    t1 = time.monotonic()
    print(json.dumps({"goodput_bps": total * 8 / (t1 - t0), "bytes": total, "seconds": t1 - t0}), flush=True)
    return 0


def send(addr, port, n, seconds, pace_bps):
    """n flows, each sending for `seconds`; pace_bps > 0 caps each with SO_MAX_PACING_RATE."""
    socks = []
    deadline = time.monotonic() + 10
    while len(socks) < n:
        try:
            s = socket.create_connection((addr, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if pace_bps:
            s.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, int(pace_bps / 8))
        socks.append(s)
    block = os.urandom(256 * 1024)
    end = time.monotonic() + seconds

    def pump(s):
        while time.monotonic() < end:
            s.sendall(block)
        s.close()

    threads = [threading.Thread(target=pump, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def measure(a, cc, flows, pace):
    """One layout in a fresh two-host lab; returns a result dict."""
    # local: the sender's own egress is the bottleneck (a NIC: tbf drops of whole GSO packets are
    # back-pressure to TCP, not losses); remote: the sender is unshaped and the receiver's switch
    # port queues, where a drop is a loss that TCP must repair, as when flows converge on a peer.
    remote = a.queue == "remote"
    m = Host("m", MASTER_ADDR, None if remote else a.rate, a.rate)
    p = Host("p0", peer_addr(0), a.rate, a.rate)
    shape = lan_net.Shape(burst=a.burst, framing=a.framing)
    lab = Lab([m, p], tag=f"lsf{os.getpid() % 65536:04x}", cc=cc, shape=shape)
    out = {}
    try:
        lab.up()
        listening = threading.Event()

        def on_out(_, line):
            if line == "listening":
                listening.set()
            elif line.startswith("{"):
                out.update(json.loads(line))

        log = os.path.join(a.log_dir, f"flows-{cc}-{flows}-{pace}.log")
        me = [sys.executable, "-u", os.path.abspath(__file__)]
        r = lab.spawn(p, "recv", me + ["recv", p.addr, str(PORT), str(flows)], log, on_stdout=on_out)
        if not listening.wait(10):
            raise RuntimeError(f"receiver did not start; see {log}")
        tcp0, drops0 = lab.tcp_counters(m), lab.tc_drops()
        pace_bps = pace * shape.qdisc_rate(a.rate) / flows if pace else 0
        s = lab.spawn(m, "send", me + ["send", p.addr, str(PORT), str(flows), str(a.seconds), str(pace_bps)], log)
        s.exited.wait(a.seconds + 30)
        r.exited.wait(30)
        tcp1, drops1 = lab.tcp_counters(m), lab.tc_drops()
        segs = tcp1.get("OutSegs", 0) - tcp0.get("OutSegs", 0)
        retr = tcp1.get("RetransSegs", 0) - tcp0.get("RetransSegs", 0)
        link = "p0 down" if remote else "m up"
        return {"cc": cc, "flows": flows, "pace": pace, "goodput_over_nominal": out.get("goodput_bps", 0) / a.rate,
                "retrans_fraction": retr / segs if segs else None, "out_segs": segs,
                "tbf_drops": drops1.get(link, 0) - drops0.get(link, 0)}
    finally:
        lab.close()


def main(argv):
    if argv and argv[0] == "recv":
        return recv(argv[1], int(argv[2]), int(argv[3]))
    if argv and argv[0] == "send":
        return send(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), float(argv[5]))
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("bench_lan", os.path.join(os.path.dirname(__file__), "lan"))
    spec = importlib.util.spec_from_loader("bench_lan", loader)
    lan = importlib.util.module_from_spec(spec)
    loader.exec_module(lan)  # reuse bench/lan's parsers for rates and bursts
    ap = argparse.ArgumentParser(prog="bench/lan_flows.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--rate", type=lan.parse_rate, default=lan.parse_rate("50M"))
    ap.add_argument("--burst", type=lan.parse_burst, default=0.001, help="tbf burst (default 1ms)")
    ap.add_argument("--framing", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--cc", choices=["reno", "bbr", "cubic"], action="append", help="default: reno and bbr")
    ap.add_argument("--flows", type=int, action="append", help="default: 1 and 8")
    ap.add_argument("--pace", type=float, help="cap each flow at PACE x link rate / flows (SO_MAX_PACING_RATE); "
                    "default: both unpaced and 0.97")
    ap.add_argument("--queue", choices=["local", "remote"], default="remote",
                    help="where the bottleneck queue is: remote (default) = the receiver's switch port, the "
                         "sender unshaped; local = the sender's own egress, like a NIC")
    ap.add_argument("--log-dir", default="/var/tmp/lanscatter-bench/flows")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/lan_flows.py needs root (network namespaces, tc)", file=sys.stderr)
        return 2
    os.makedirs(a.log_dir, exist_ok=True)
    lan_net.ensure_iproute2()
    layouts = [(f, p) for f in (a.flows or [1, 8]) for p in ([a.pace] if a.pace is not None else [0, 0.97])
               if not (f == 1 and p)]
    print(f"link {lan_net.Shape(a.burst, a.framing).describe(a.rate)}, {a.queue} queue; {a.seconds:g} s per "
          f"layout; loaded machines bias goodput down, not the retransmission counts")
    print(f"{'cc':5} {'flows':>5} {'pacing':>14} {'goodput/nominal':>15} {'retrans':>8} {'tbf drops':>9}")
    for cc in a.cc or ["reno", "bbr"]:
        for flows, pace in layouts:
            r = measure(a, cc, flows, pace)
            rf = r["retrans_fraction"]
            print(f"{cc:5} {flows:5} {(f'{pace:g} x rate/n' if pace else 'none'):>14} "
                  f"{r['goodput_over_nominal']:15.3f} {('-' if rf is None else f'{rf:.2%}'):>8} "
                  f"{r['tbf_drops']:9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
