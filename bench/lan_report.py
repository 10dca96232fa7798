"""Numbers and pictures for bench/lan: the Kumar-Ross bound, the results table, the SVG plot.

Why: efficiency is only meaningful against the physical limit of the configured links, and a
single number hides how the swarm got there, so every run also draws each peer's progress over
time against the bound. The plot is plain SVG written here (no gnuplot/matplotlib dependency).

Definitions (as in the issue and the field measurements in the reference notes):
- T_bound = max(F/u_master, F/min(d_peer), N*F/(u_master + sum u_peer)) with F the data size in
  bits and the *configured* (nominal) rates: the Kumar-Ross minimum distribution time.
- efficiency = T_bound / T_measured, T_measured = peers started -> last peer exited verified.
- g = measured TCP goodput / nominal rate of one shaped link (~0.94 here); eff/g is how close the
  run came to what TCP over these links can carry. g is printed separately, never folded in.
"""

import html
import re

MiB = 1 << 20


def kumar_ross(size_bytes, master_up_bps, peers):
    """peers: list of (up_bps, down_bps). Returns seconds."""
    f = size_bytes * 8
    n = len(peers)
    terms = [f / master_up_bps, f / min(d for _, d in peers),
             n * f / (master_up_bps + sum(u for u, _ in peers))]
    return max(terms)


def fmt_rate(bps):
    if bps >= 1e9 and bps % 1e9 == 0:
        return f"{bps / 1e9:g}G"
    return f"{bps / 1e6:g}M"


def fmt_size(b):
    if b >= 1 << 30:
        return f"{b / (1 << 30):g}GiB"
    return f"{b / MiB:g}MiB"


COLUMNS = [
    ("scenario", 12), ("N", 3), ("rate", 14), ("bytes", 8), ("T_bound", 8), ("g", 5),
    ("T_meas", 8), ("eff", 5), ("eff/g", 6), ("naive_T", 8), ("speedup", 7), ("BT_T", 7), ("T/BT", 5),
    ("m_up/size", 9),
    ("RSS_MiB m/p", 11), ("ok", 3),
]


def table_header():
    head = " ".join(name.rjust(w) if i else name.ljust(w) for i, (name, w) in enumerate(COLUMNS))
    return head + "\n" + "-" * len(head)


def table_row(r):
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    rss_m = r.get("rss_master_kib")
    rss_p = r.get("rss_peer_max_kib")
    rss = f"{num(rss_m and rss_m / 1024, '.0f')}/{num(rss_p and rss_p / 1024, '.0f')}"
    naive = num(r.get("naive_t"), ".1f") + ("*" if r.get("naive_reused") else "")
    cells = [
        r["scenario"], str(r["n"]), r["rate_desc"], fmt_size(r["bytes"]), num(r["t_bound"], ".1f"),
        num(r.get("goodput_factor"), ".3f"), num(r.get("t_measured"), ".1f"), num(r.get("efficiency"), ".3f"),
        num(r.get("eff_over_g"), ".3f"), naive, num(r.get("speedup"), ".2f"),
        num(r.get("bt_t"), ".1f") + ("!" if r.get("bt_wrong_peers") else ""), num(r.get("t_over_bt"), ".2f"),
        num(r.get("master_up_ratio"), ".3f"), rss, "yes" if r.get("ok") else "NO",
    ]
    return " ".join(c.rjust(w) if i else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def svg_progress(path, title, series, t_bound, goodput, x_max=None, notes=(), util=None):
    """series: {label: [(t, fraction)]}. Draws progress lines, the ideal line to T_bound and T_bound/g."""
    w, h, ml, mr, mt, mb = 860, 480, 60, 170, 40, 50
    pw, ph = w - ml - mr, h - mt - mb
    t_end = max([t for s in series.values() for t, _ in s] + [t_bound / (goodput or 1)])
    x_max = x_max or t_end * 1.05
    step = _nice_step(x_max / 8)

    def X(t):
        return ml + pw * min(t, x_max) / x_max

    def Y(fr):
        return mt + ph * (1 - fr)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{ml}" y="22" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    t = 0.0
    while t <= x_max + 1e-9:
        out.append(f'<line x1="{X(t):.1f}" y1="{mt}" x2="{X(t):.1f}" y2="{mt + ph}" stroke="#eee"/>'
                   f'<text x="{X(t):.1f}" y="{mt + ph + 16}" text-anchor="middle">{t:g}</text>')
        t += step
    for fr in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{ml}" y1="{Y(fr):.1f}" x2="{ml + pw}" y2="{Y(fr):.1f}" stroke="#eee"/>'
                   f'<text x="{ml - 6}" y="{Y(fr) + 4:.1f}" text-anchor="end">{int(fr * 100)}%</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 12}" text-anchor="middle">seconds since peers started</text>')
    bounds = [(t_bound, "#000", "6,4", "bound (nominal rate)")]
    if goodput:
        bounds.append((t_bound / goodput, "#555", "2,3", f"bound x 1/g (g={goodput:.3f})"))
    legend = []
    for tb, color, dash, label in bounds:
        out.append(f'<line x1="{X(0):.1f}" y1="{Y(0):.1f}" x2="{X(tb):.1f}" y2="{Y(1):.1f}" stroke="{color}" '
                   f'stroke-dasharray="{dash}" stroke-width="1.5"/>')
        legend.append((color, dash, label))
    if util:
        d = " ".join(f"{X(t):.1f},{Y(min(max(u, 0), 1)):.1f}" for t, u in util)
        out.append(f'<polyline points="{d}" fill="none" stroke="#bbb" stroke-width="1"/>')
        legend.append(("#bbb", "", "master uplink / nominal"))
    natural = lambda kv: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", kv[0])]  # noqa: E731
    for i, (label, pts) in enumerate(sorted(series.items(), key=natural)):
        color = PALETTE[i % len(PALETTE)]
        if pts:
            d = " ".join(f"{X(t):.1f},{Y(min(max(fr, 0), 1)):.1f}" for t, fr in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.4"/>')
        legend.append((color, "", label))
    for i, (color, dash, label) in enumerate(legend[:24]):
        y = mt + 10 + i * 16
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{ml + pw + 10}" y1="{y}" x2="{ml + pw + 30}" y2="{y}" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/><text x="{ml + pw + 34}" y="{y + 4}">{html.escape(label)}</text>')
    for i, note in enumerate(notes):
        out.append(f'<text x="{ml + 8}" y="{mt + 16 + 14 * i}" fill="#333">{html.escape(note)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def _nice_step(raw):
    for base in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if raw <= base:
            return base
    return 10000
