"""Network lab for bench/lan: namespaces, a bridge, shaped veths, and the processes run in them.

Why: lanscatter must be measured on real TCP over rate-limited links, and this one machine has to
emulate a switched LAN for that. Each host (master, peers) gets its own network namespace with one
veth whose other end sits on a bridge in a separate "switch" namespace. Nothing is created in the
root namespace, so the machine's own networking is never touched.

Design choices:
- Addresses come only from 198.18.0.0/15 (the benchmarking range); IPv6 is disabled in every lab
  namespace before interfaces exist, so not even link-local addresses appear.
- Every link is shaped in both directions with tbf: the host-side veth egress is the host's upload,
  the switch-side veth egress is its download. The burst is by default ~1 ms of the rate but at
  least one whole GSO packet (see GSO_BURST for why and what it costs otherwise); `Shape(burst=)`
  sets it exactly (e.g. a real 1 ms), at least two full frames. The queue is a 20 ms tail-drop
  queue; the kernel here has no netem/fq/sfq.
- Framing (`Shape(framing=24)`): a real Ethernet link of rate R also carries preamble, FCS and
  inter-frame gap, 24 B per frame that no qdisc counts. tbf adds its `overhead` once per (GSO)
  packet, not per frame, so instead the shaper runs at R * 1514 / (1514 + framing): exact for
  full-size frames (all the data), and `mpu` makes a minimum frame (ACKs) cost its 84 wire bytes.
- TCP congestion control is set per host namespace (`Lab(cc=...)`). This machine defaults to BBR
  (v1), which the LAN's workstations do not run and which, with 8 flows sharing a 20 ms tail-drop
  queue, retransmits 4-7 % of its segments (8 x 100M, measured with /proc/net/snmp); reno, the
  loss-based algorithm, retransmits ~1 %. A namespace may only pick an algorithm in the global
  net.ipv4.tcp_allowed_congestion_control; `cc="cubic"` adds it there for the lab's lifetime
  and restores the list on close (it only permits, it changes no one's default).
- Processes are started with `ip netns exec` (which execs, so the PID we hold is the program itself)
  and reaped with os.wait4, which gives exact peak RSS (ru_maxrss) and CPU time without polling.
- Everything created is recorded and torn down in reverse order by `Lab.close()`; processes are
  killed only by the PIDs we started.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

LAB_NET = "198.18.0"  # /24 inside 198.18.0.0/15; master .1, peers .11 upwards
MASTER_ADDR = LAB_NET + ".1"


def peer_addr(i):
    return f"{LAB_NET}.{11 + i}"


def run(cmd, check=True):
    """Run an administrative command, fail loudly with its stderr."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()}")
    return r


def ensure_tools(tools):
    """{command: Debian package}: install the packages of missing commands with apt-get."""
    missing = sorted({pkg for t, pkg in tools.items()
                      if subprocess.run(["sh", "-c", f"command -v {t}"], stdout=subprocess.DEVNULL).returncode != 0})
    if not missing:
        return
    print(f"bench/lan: installing {' '.join(missing)} with apt-get", flush=True)
    run(["apt-get", "update"])
    run(["apt-get", "install", "-y"] + missing)


def ensure_iproute2():
    """iproute2 is the one thing every lab needs; baselines add their own (ensure_tools)."""
    ensure_tools({"ip": "iproute2", "tc": "iproute2", "ss": "iproute2"})


# Smallest burst that holds one whole GSO packet (64 KiB of payload plus the per-segment headers
# the qdisc counts). Below it tbf splits every GSO packet in software and re-arms its timer per
# frame, and on this 2-core VM the lab itself then eats the CPU the system under test needs:
# measured with iperf3, one flow per link in a ring of 9 hosts at 100 Mbit/s, a 1 ms burst
# (12.5 KB) used 95 % of both cores for 0.91 of nominal, an 80 KB burst 9 % for 0.95.
# The burst cannot flatter a result: over a run, a link carries at most rate * T + burst bytes,
# and 80 KB is < 0.01 % of any data set the scenarios use.
GSO_BURST = 80 * 1000


ETH_FRAME = 1514  # a full frame as the qdisc counts it: 1500 B of IP plus the 14 B Ethernet header
ETH_MIN_FRAME = 60  # the smallest frame as the qdisc counts it (padded, without FCS)


class Shape:
    """How every link is shaped: burst (None = the default rule, an int = bytes, a float = seconds of
    the link's rate, e.g. 0.001 for 1 ms), framing bytes per frame, tail-drop queue in seconds."""

    def __init__(self, burst=None, framing=0, queue_s=0.020):
        self.burst, self.framing, self.queue_s = burst, framing, queue_s

    def burst_desc(self):
        if self.burst is None:
            return f"default (1 ms, >= {GSO_BURST} B)"
        return f"{self.burst * 1e3:g} ms" if isinstance(self.burst, float) else f"{self.burst} B"

    def qdisc_rate(self, rate_bps):
        """The rate tbf must run at so that the wire (frames + framing) carries `rate_bps`."""
        return rate_bps * ETH_FRAME / (ETH_FRAME + self.framing)

    def describe(self, rate_bps):
        burst, limit, mpu = tbf_params(rate_bps, self)
        return (f"tbf burst {burst} B, queue {limit} B ({self.queue_s * 1e3:g} ms), "
                + (f"framing {self.framing} B/frame (shaped at {self.qdisc_rate(rate_bps) / 1e6:.3f} Mbit/s, mpu {mpu})"
                   if self.framing else "no framing overhead"))


def tbf_params(rate_bps, shape=None):
    """(burst, limit, mpu) in the qdisc's bytes. Default burst ~1 ms of the rate but at least one GSO
    packet; an explicit burst is kept (it may split GSO packets: that is the condition asked for) but
    never below two full frames, or tbf would drop every full frame. Queue ~20 ms of the rate
    but >= 64 KiB and >= 2 bursts."""
    shape = shape or Shape()
    if shape.burst is None:
        burst = max(int(rate_bps / 8 / 1000), GSO_BURST)
    else:
        want = rate_bps / 8 * shape.burst if isinstance(shape.burst, float) else shape.burst
        burst = max(int(want), 2 * (ETH_FRAME + shape.framing))
    limit = max(int(rate_bps / 8 * shape.queue_s), 64 * 1024, 2 * burst)
    mpu = 0
    if shape.framing:
        mpu = -(-(ETH_MIN_FRAME + shape.framing) * ETH_FRAME // (ETH_FRAME + shape.framing))
    return burst, limit, mpu


class Host:
    def __init__(self, name, addr, up_bps, down_bps):
        self.name, self.addr, self.up_bps, self.down_bps = name, addr, up_bps, down_bps
        self.ns = None


class Proc:
    """A process we started in a namespace; reaped by a thread with wait4 for rusage."""

    def __init__(self, label, ns, argv, log_path, on_stdout=None, on_stderr=None, cwd=None):
        self.label = label
        self.argv = argv
        self.started = time.monotonic()
        self.ended = None
        self.returncode = None
        self.maxrss_kib = None
        self.cpu_s = None
        self.exited = threading.Event()
        self._log = open(log_path, "a", buffering=1)
        self._log.write(f"# {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n")
        self.popen = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True, cwd=cwd)
        self.pid = self.popen.pid
        self._readers = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, "out", on_stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, "err", on_stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._reap, daemon=True).start()

    def _pump(self, stream, tag, cb):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic()
            try:
                self._log.write(f"{now - self.started:9.3f} {tag} {line}\n")
            except ValueError:
                pass  # log closed during teardown
            if cb:
                cb(now, line)

    def _reap(self):
        try:
            _, status, ru = os.wait4(self.pid, 0)
        except ChildProcessError:
            status, ru = 0, None
        self.ended = time.monotonic()
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode  # keep subprocess from reaping it again
        if ru is not None:
            self.maxrss_kib = ru.ru_maxrss
            self.cpu_s = ru.ru_utime + ru.ru_stime
        for t in self._readers:
            t.join(timeout=2)
        try:
            self._log.write(f"# exit {self.returncode} maxrss {self.maxrss_kib} KiB cpu {self.cpu_s} s\n")
        except ValueError:
            pass
        self.exited.set()

    def alive(self):
        return not self.exited.is_set()

    def kill(self, sig=signal.SIGTERM, grace=3.0):
        """Signal our PID; escalate to SIGKILL after `grace` seconds."""
        if not self.alive():
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        if sig != signal.SIGKILL and not self.exited.wait(grace):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.exited.wait(5)

    def close_log(self):
        self.exited.wait(1)
        self._log.close()


class Lab:
    """A switched LAN of hosts in namespaces. Use as a context manager; close() is idempotent."""

    def __init__(self, hosts, tag=None, cc=None, shape=None):
        self.tag = tag or f"lsb{os.getpid() % 65536:04x}"
        self.hosts = hosts
        self.cc = cc
        self.shape = shape or Shape()
        self.allowed_cc_restore = None  # the global allowed list, if we widened it
        self.switch_ns = f"{self.tag}-sw"
        self.namespaces = []  # created, in creation order
        self.procs = []
        self.closed = False

    # --- setup -------------------------------------------------------------------------------
    def _add_ns(self, ns):
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        for key in ("all", "default"):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def up(self):
        for h in self.hosts:
            if not re.fullmatch(r"198\.1[89]\.\d+\.\d+", h.addr):
                raise ValueError(f"refusing address {h.addr}: the lab only uses 198.18.0.0/15")
        self._allow_cc()
        self._add_ns(self.switch_ns)
        run(["ip", "-n", self.switch_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0"])
        run(["ip", "-n", self.switch_ns, "link", "set", "br0", "up"])
        for h in self.hosts:
            h.ns = f"{self.tag}-{h.name}"
            self._add_ns(h.ns)
            sw_if = f"v-{h.name}"
            run(["ip", "link", "add", "eth0", "netns", h.ns, "type", "veth",
                 "peer", "name", sw_if, "netns", self.switch_ns])
            run(["ip", "-n", self.switch_ns, "link", "set", sw_if, "master", "br0", "up"])
            run(["ip", "-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", "eth0"])
            run(["ip", "-n", h.ns, "link", "set", "eth0", "up"])
            if self.cc:
                run(["ip", "netns", "exec", h.ns, "sysctl", "-qw", f"net.ipv4.tcp_congestion_control={self.cc}"])
            for ns, dev, rate in ((h.ns, "eth0", h.up_bps), (self.switch_ns, sw_if, h.down_bps)):
                if rate is None:  # unshaped (bench/lan_flows.py: only the switch port queues)
                    continue
                burst, limit, mpu = tbf_params(rate, self.shape)
                run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
                     "rate", f"{int(self.shape.qdisc_rate(rate))}bit", "burst", str(burst), "limit", str(limit)]
                    + (["mpu", str(mpu)] if mpu else []))
        return self

    def _allow_cc(self):
        """Namespaces may only select algorithms the global allowed list names: widen it if needed."""
        if not self.cc:
            return
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
            available = f.read().split()
        if self.cc not in available:
            raise RuntimeError(f"TCP congestion control {self.cc!r} is not available in this kernel "
                               f"(available: {' '.join(available)}); pick one of those or --cc host")
        path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
        with open(path) as f:
            allowed = f.read().split()
        if self.cc not in allowed:
            run(["sysctl", "-qw", f"net.ipv4.tcp_allowed_congestion_control={' '.join(allowed + [self.cc])}"])
            self.allowed_cc_restore = " ".join(allowed)

    def effective_cc(self, host):
        """What the host's namespace really uses (for the record: `host` means whatever it inherits)."""
        r = run(["ip", "netns", "exec", host.ns, "cat", "/proc/sys/net/ipv4/tcp_congestion_control"], check=False)
        return r.stdout.strip() or "?"

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.close()

    # --- processes ---------------------------------------------------------------------------
    def spawn(self, host, label, argv, log_path, **kw):
        p = Proc(label, host.ns, argv, log_path, **kw)
        self.procs.append(p)
        return p

    # --- counters ----------------------------------------------------------------------------
    def link_bytes(self, host):
        """(tx_bytes, rx_bytes) of the host's veth as counted by the kernel (includes headers)."""
        r = run(["ip", "-j", "-s", "-n", host.ns, "link", "show", "dev", "eth0"])
        st = json.loads(r.stdout)[0]["stats64"]
        return st["tx"]["bytes"], st["rx"]["bytes"]

    def tcp_counters(self, host):
        """Every TCP counter of the host's namespace (/proc/net/snmp `Tcp:` and /proc/net/netstat
        `TcpExt:`), e.g. retransmissions (link capacity that carried no new data) and their causes."""
        r = run(["ip", "netns", "exec", host.ns, "cat", "/proc/net/snmp", "/proc/net/netstat"], check=False)
        out = {}
        rows = {}
        for line in (r.stdout or "").splitlines():
            key, _, rest = line.partition(":")
            if key in ("Tcp", "TcpExt"):
                rows.setdefault(key, []).append(rest.split())
        for key, pair in rows.items():
            if len(pair) >= 2:
                for name, val in zip(pair[0], pair[1]):
                    try:
                        out[name] = int(val)
                    except ValueError:
                        pass
        return out

    def switch_counters(self):
        """{host name: (bytes the host sent, bytes sent to the host)} from the switch-side veths,
        all in one `ip` call so it is cheap enough to sample twice a second."""
        r = run(["ip", "-j", "-s", "-n", self.switch_ns, "link", "show"], check=False)
        out = {}
        try:
            for link in json.loads(r.stdout or "[]"):
                name = link.get("ifname", "")
                if name.startswith("v-"):
                    st = link["stats64"]
                    out[name[2:]] = (st["rx"]["bytes"], st["tx"]["bytes"])
        except (ValueError, KeyError):
            pass
        return out

    def tc_drops(self):
        """{"<host> up|down": tbf drops} over all shaped links (queue overflow shows up here)."""
        out = {}
        for ns in self.namespaces:
            r = run(["tc", "-j", "-s", "-n", ns, "qdisc", "show"], check=False)
            try:
                for q in json.loads(r.stdout or "[]"):
                    if q.get("kind") == "tbf":
                        dev = q.get("dev", "?")
                        key = f"{dev[2:]} down" if dev.startswith("v-") else f"{ns.split('-', 1)[1]} up"
                        out[key] = int(q.get("drops", 0))
            except ValueError:
                pass
        return out

    # --- teardown ----------------------------------------------------------------------------
    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            p.kill(signal.SIGTERM)
        for ns in reversed(self.namespaces):
            # Anything still in a namespace we created was started by us (or its child): kill by PID.
            r = run(["ip", "netns", "pids", ns], check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    print(f"bench/lan: killed leftover pid {pid} in {ns}", flush=True)
                except (ProcessLookupError, ValueError):
                    pass
            r = run(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0:
                print(f"bench/lan: WARNING could not delete netns {ns}: {r.stderr.strip()}", flush=True)
        for p in self.procs:
            p.close_log()
        if self.allowed_cc_restore is not None:
            run(["sysctl", "-qw", f"net.ipv4.tcp_allowed_congestion_control={self.allowed_cc_restore}"], check=False)
