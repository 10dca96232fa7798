// lanscatter status page: follows /api/events (server-sent events) and renders the swarm.
// No dependencies, no build step. Untrusted strings (node names, events) only ever go through
// textContent. Chunk maps are drawn on canvases, aggregated to one pixel column per group of
// chunks, and only for rows on screen, so 10,000 chunks x 500 nodes stays cheap.
"use strict";

const PAGE = document.body.dataset.page; // "master" or "peer"
const $ = (id) => document.getElementById(id);
const HISTORY_WINDOW = 600; // seconds shown by the chart

const state = {
  snap: null,
  history: [],
  maps: new Map(), // node id -> { cells: Uint8Array, dirty: bool }
  rows: new Map(), // node id -> row elements
  visible: new Set(),
  order: "",
  freshConnection: true,
};

// ---------- formatting ----------
function fmtBytes(n) {
  if (!isFinite(n)) return "–";
  const u = ["B", "kB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + u[i];
}
// Rates are bytes per second with decimal prefixes, rounded like `units::human_rate` in the
// binary, so the page, the tray and the plain output show the same figure.
const fmtRate = (bps) => fmtBytes(bps || 0) + "/s";
function fmtPct(done, total) {
  if (!total) return "100%";
  if (done >= total) return "100%";
  return (Math.floor((done / total) * 1000) / 10).toFixed(1) + "%";
}
function fmtDuration(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function fmtTime(unix) {
  const d = new Date(unix * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}
function stateName(st, slow) {
  const s = (st && st.state) || "starting";
  if (slow && s === "syncing") return "slow";
  return s;
}
function stateLabel(st, slow) {
  const s = stateName(st, slow);
  if (s === "up_to_date") return "up to date";
  if (s === "indexing" && st.total) return "indexing " + fmtPct(st.done, st.total);
  if (s === "error") return "error";
  return s;
}
function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}
function setPill(el, st, slow) {
  if (!el) return;
  setText(el, stateLabel(st, slow));
  const cls = "pill s-" + stateName(st, slow);
  if (el.className !== cls) el.className = cls;
  el.title = st && st.state === "error" ? String(st.message || "") : "";
}

// ---------- colours (follow the CSS variables, so dark mode just works) ----------
let colours = null;
function readColours() {
  const cs = getComputedStyle(document.documentElement);
  const rgb = (name) => {
    const c = document.createElement("canvas").getContext("2d");
    c.fillStyle = cs.getPropertyValue(name).trim() || "#888";
    const hex = c.fillStyle; // normalised to #rrggbb
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  };
  colours = {
    has: rgb("--has"), inc: rgb("--inc"), miss: rgb("--miss"), card: rgb("--card"),
    accent: cs.getPropertyValue("--accent").trim(), up: cs.getPropertyValue("--up").trim(),
    line: cs.getPropertyValue("--line").trim(), muted: cs.getPropertyValue("--muted").trim(),
    accentSoft: cs.getPropertyValue("--accent-soft").trim(),
  };
}
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  readColours();
  for (const m of state.maps.values()) m.dirty = true;
  scheduleDraw();
});

// ---------- chunk maps ----------
function decodeMap(b64, n) {
  const bin = atob(b64);
  const cells = new Uint8Array(n);
  for (let i = 0; i < n; i++) cells[i] = (bin.charCodeAt(i >> 2) >> ((i & 3) * 2)) & 3;
  return cells;
}

function drawMap(canvas, cells) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  const n = cells.length;
  if (n === 0) { ctx.clearRect(0, 0, w, h); return; }
  const img = ctx.createImageData(w, h);
  const d = img.data;
  const perCell = w / n;
  const gap = perCell >= 4; // room to separate cells visually
  const col = new Uint8ClampedArray(4 * w);
  for (let x = 0; x < w; x++) {
    let a = Math.floor((x * n) / w);
    let b = Math.max(a + 1, Math.floor(((x + 1) * n) / w));
    let has = 0, inc = 0;
    for (let i = a; i < b; i++) { const c = cells[i]; if (c === 2) has++; else if (c === 1) inc++; }
    const cnt = b - a, miss = cnt - has - inc;
    let rgb;
    if (gap && Math.floor(((x + 1) * n) / w) !== a && x + 1 < w) rgb = colours.card;
    else if (inc > 0) rgb = colours.inc; // anything in flight shows, however few
    else rgb = [0, 1, 2].map((k) => (colours.has[k] * has + colours.miss[k] * miss) / cnt);
    col[4 * x] = rgb[0]; col[4 * x + 1] = rgb[1]; col[4 * x + 2] = rgb[2]; col[4 * x + 3] = 255;
  }
  for (let y = 0; y < h; y++) d.set(col, 4 * w * y);
  ctx.putImageData(img, 0, 0);
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        const id = Number(e.target.dataset.mapFor);
        if (e.isIntersecting) state.visible.add(id); else state.visible.delete(id);
      }
      scheduleDraw();
    }, { rootMargin: "200px" })
  : null;

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    if (!colours) readColours();
    for (const [id, m] of state.maps) {
      if (!m.dirty) continue;
      const canvas = m.canvas || (state.rows.get(id) || {}).map;
      if (!canvas) continue;
      if (observer && !m.canvas && !state.visible.has(id)) continue; // drawn when scrolled into view
      drawMap(canvas, m.cells);
      m.dirty = false;
    }
    drawChart();
  });
}

// ---------- chart ----------
function niceCeil(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const canvas = $("chart");
  if (!canvas || !colours) return;
  const dpr = window.devicePixelRatio || 1;
  const cw = canvas.clientWidth, ch = canvas.clientHeight;
  if (cw === 0) return;
  canvas.width = Math.round(cw * dpr); canvas.height = Math.round(ch * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cw, ch);
  const pts = state.history;
  const left = 64, right = 8, top = 8, bottom = 20;
  const pw = cw - left - right, ph = ch - top - bottom;
  const now = pts.length ? pts[pts.length - 1][0] : Date.now() / 1000;
  const span = Math.min(HISTORY_WINDOW, Math.max(60, pts.length ? now - pts[0][0] : 60));
  const t0 = now - span;
  let max = 0;
  for (const p of pts) if (p[0] >= t0) max = Math.max(max, p[1], p[2]);
  const ymax = niceCeil(max * 1.1);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = colours.muted;
  ctx.strokeStyle = colours.line;
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(top + ph - (ph * i) / 4) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(fmtRate((ymax * i) / 4), left - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const step = span > 300 ? 120 : span > 120 ? 60 : 15;
  for (let s = 0; s <= span; s += step) {
    const x = left + pw - (pw * s) / span;
    ctx.fillText(s === 0 ? "now" : "-" + fmtDuration(s).replace(" 0 s", ""), Math.min(Math.max(x, left + 14), left + pw - 12), top + ph + 5);
  }
  const X = (t) => left + (pw * (t - t0)) / span;
  const Y = (v) => top + ph - (ph * v) / ymax;
  const vis = pts.filter((p) => p[0] >= t0);
  if (vis.length < 2) {
    ctx.textBaseline = "middle";
    ctx.fillText("collecting data…", left + pw / 2, top + ph / 2);
    return;
  }
  ctx.beginPath();
  ctx.moveTo(X(vis[0][0]), Y(0));
  for (const p of vis) ctx.lineTo(X(p[0]), Y(p[1]));
  ctx.lineTo(X(vis[vis.length - 1][0]), Y(0));
  ctx.closePath();
  ctx.fillStyle = colours.accentSoft;
  ctx.fill();
  const line = (k, colour) => {
    ctx.beginPath();
    vis.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[k])) : ctx.moveTo(X(p[0]), Y(p[k]))));
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.lineJoin = "round"; ctx.stroke();
  };
  line(1, colours.accent);
  line(2, colours.up);
}

// ---------- node rows (master page) ----------
function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function makeRow(id) {
  const row = el("div", "node");
  row.dataset.node = String(id);
  const who = el("div", "who", row);
  const nameLine = el("div", "n-name", who);
  const name = el("span", "", nameLine);
  const role = el("span", "role", nameLine);
  const addr = el("div", "n-addr", who);
  const pillcell = el("div", "pillcell", row);
  const pill = el("span", "pill", pillcell);
  const prog = el("div", "prog", row);
  const bar = el("div", "bar", prog);
  const fill = el("div", "", bar);
  const pct = el("span", "n-progress", prog);
  const rates = el("div", "rates", row);
  const xfers = el("div", "xfers", row);
  const map = el("canvas", "map", row);
  map.dataset.mapFor = String(id);
  map.setAttribute("aria-label", "chunk map");
  if (observer) observer.observe(map);
  return { row, name, role, addr, pill, fill, pct, rates, xfers, map };
}

function renderRates(elm, down, up) {
  const key = down.toFixed(0) + "/" + up.toFixed(0);
  if (elm.dataset.key === key) return;
  elm.dataset.key = key;
  elm.replaceChildren("↓ ", Object.assign(document.createElement("b"), { textContent: fmtRate(down) }),
    "  ↑ ", Object.assign(document.createElement("b"), { textContent: fmtRate(up) }));
}

function renderNodes(snap) {
  const box = $("nodes");
  const seen = new Set();
  for (const n of snap.nodes) {
    seen.add(n.id);
    let r = state.rows.get(n.id);
    if (!r) { r = makeRow(n.id); state.rows.set(n.id, r); }
    setText(r.name, n.name || "node " + n.id);
    setText(r.role, n.is_master ? "master" : "");
    setText(r.addr, n.address || "");
    r.row.dataset.name = (n.name || "") + " " + (n.address || "");
    r.row.dataset.state = stateName(n.state, n.slow);
    setPill(r.pill, n.state, n.slow);
    const pct = fmtPct(n.bytes_done, n.bytes_total);
    setText(r.pct, pct);
    r.row.dataset.progress = pct;
    const w = (n.bytes_total ? Math.min(100, (100 * n.bytes_done) / n.bytes_total) : 100).toFixed(2) + "%";
    if (r.fill.style.width !== w) r.fill.style.width = w;
    renderRates(r.rates, n.download_bps || 0, n.upload_bps || 0);
    setText(r.xfers, "⇣" + (n.active_downloads || 0) + "  ⇡" + (n.active_uploads || 0));
    r.xfers.title = (n.active_downloads || 0) + " downloads, " + (n.active_uploads || 0) + " uploads in flight";
    if (n.map != null) state.maps.set(n.id, { cells: decodeMap(n.map, n.chunks), dirty: true });
  }
  for (const [id, r] of state.rows) {
    if (!seen.has(id)) {
      if (observer) observer.unobserve(r.map);
      r.row.remove();
      state.rows.delete(id);
      state.maps.delete(id);
      state.visible.delete(id);
    }
  }
  applyOrder(snap);
  setText($("nodes-empty"), snap.nodes.length ? "" : "No nodes yet.");
}

function applyOrder(snap) {
  const by = $("sort").value;
  const f = $("filter").value.trim().toLowerCase();
  const nodes = snap.nodes.slice();
  const frac = (n) => (n.bytes_total ? n.bytes_done / n.bytes_total : 1);
  const cmp = {
    id: (a, b) => a.id - b.id,
    name: (a, b) => (a.name || "").localeCompare(b.name || "") || a.id - b.id,
    progress: (a, b) => frac(a) - frac(b) || a.id - b.id,
    rate: (a, b) => (b.download_bps || 0) - (a.download_bps || 0) || a.id - b.id,
  }[by] || ((a, b) => a.id - b.id);
  nodes.sort((a, b) => (b.is_master - a.is_master) || cmp(a, b));
  const shown = nodes.filter((n) => {
    if (!f) return true;
    const r = state.rows.get(n.id);
    return (r.row.dataset.name + " " + r.row.dataset.state).toLowerCase().includes(f);
  });
  const key = by + "|" + f + "|" + shown.map((n) => n.id).join(",");
  if (key === state.order) return;
  state.order = key;
  const box = $("nodes");
  box.replaceChildren(...shown.map((n) => state.rows.get(n.id).row));
  for (const m of state.maps.values()) m.dirty = true;
}

// ---------- page-level rendering ----------
function renderEvents(events) {
  const ol = $("events");
  const items = events.slice().reverse();
  const key = items.length ? items[0].time + items[0].message + items.length : "";
  if (ol.dataset.key === key) return;
  ol.dataset.key = key;
  ol.replaceChildren(...items.map((e) => {
    const li = document.createElement("li");
    const t = el("time", "", li);
    t.textContent = fmtTime(e.time);
    el("span", "ev-msg", li).textContent = e.message;
    return li;
  }));
  if (!items.length) {
    const li = el("li", "muted", ol);
    li.textContent = "Nothing yet.";
  }
}

// Expected peers (master started with --expect): one row per entry, states as pills.
const EXPECT_PILL = { done: "up_to_date", syncing: "syncing", stuck: "slow", missing: "error" };
function renderExpected(e) {
  const card = $("expected-card");
  if (!card) return;
  card.hidden = !e;
  if (!e) return;
  const key = JSON.stringify(e);
  if (card.dataset.key === key) return;
  card.dataset.key = key;
  setText($("expected-sum"), e.done + " done · " + e.syncing + " syncing · " + e.stuck + " stuck · " + e.missing +
    " missing (stuck: no progress for " + fmtDuration(e.stuck_after_secs) + ")");
  $("expected").replaceChildren(...e.peers.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.state = p.state;
    el("td", "", tr).textContent = p.want;
    const pill = el("span", "pill s-" + (EXPECT_PILL[p.state] || "starting"), el("td", "", tr));
    pill.textContent = p.state;
    el("td", "", tr).textContent = p.name || "–";
    el("td", "", tr).textContent = p.address || "–";
    el("td", "", tr).textContent = p.idle_secs == null ? "–" : fmtDuration(p.idle_secs);
    return tr;
  }));
  setText($("expected-extra"), e.unexpected && e.unexpected.length ? "Not expected: " + e.unexpected.join(", ") : "");
}

// A proxy's page: its upstream leg (a peer of the upstream swarm) above the downstream swarm.
function renderUpstream(u) {
  const card = $("upstream-card");
  if (!card) return;
  card.hidden = !u;
  if (!u) return;
  setText($("upstream-sum"), stateLabel(u.state) + (u.detail ? " · " + u.detail : ""));
  setText($("upstream-text"), fmtBytes(u.bytes_done) + " of " + fmtBytes(u.bytes_total) + " verified (" +
    fmtPct(u.bytes_done, u.bytes_total) + ") · " + fmtRate(u.download_bps) + " from upstream · " + u.files_total + " files" +
    (u.state && u.state.message ? " · " + u.state.message : ""));
}

function renderTotals(s) {
  const done = s.bytes_done, total = s.bytes_total;
  setText($("t-progress"), fmtPct(done, total));
  $("t-progress-bar").style.width = (total ? Math.min(100, (100 * done) / total) : 100).toFixed(2) + "%";
  setText($("t-rate"), fmtRate(s.download_bps));
  const finished = total === 0 || done >= total;
  setText($("t-eta"), finished ? (s.state && s.state.state === "up_to_date" ? "up to date" : "nothing in flight")
    : "ETA " + fmtDuration(s.eta_secs));
  if (PAGE === "master") {
    setText($("t-bytes-done"), fmtBytes(done) + " of " + fmtBytes(total) + " delivered");
    const master = s.nodes.find((n) => n.is_master);
    const unique = master ? master.bytes_total : 0;
    setText($("t-size"), fmtBytes(s.folder_bytes || unique));
    setText($("t-files"), s.files_total + " files · " + fmtBytes(unique) + " unique");
    const peers = s.nodes.filter((n) => !n.is_master);
    setText($("t-nodes"), String(peers.length) + (peers.length === 1 ? " peer" : " peers"));
    const counts = {};
    for (const n of peers) { const k = stateLabel(n.state, n.slow); counts[k] = (counts[k] || 0) + 1; }
    setText($("t-nodes-sub"), Object.entries(counts).map(([k, v]) => v + " " + k).join(" · ") || "waiting for peers");
    const mu = s.master_uploaded || 0, pu = s.peers_uploaded || 0, all = mu + pu;
    $("t-served-master").style.width = (all ? (100 * mu) / all : 0) + "%";
    $("t-served-peers").style.width = (all ? (100 * pu) / all : 0) + "%";
    setText($("t-served-master-txt"), "master " + fmtBytes(mu) + (all ? " (" + Math.round((100 * mu) / all) + "%)" : ""));
    setText($("t-served-peers-txt"), "peers " + fmtBytes(pu) + (all ? " (" + Math.round((100 * pu) / all) + "%)" : ""));
    renderNodes(s);
    renderExpected(s.expected);
    renderUpstream(s.upstream);
  } else {
    setText($("t-bytes-done"), fmtBytes(done) + " of " + fmtBytes(total));
    setText($("t-up"), fmtRate(s.upload_bps));
    const me = s.nodes[0];
    setText($("t-up-sub"), (me ? me.active_uploads : 0) + " uploads in flight · " + fmtBytes(s.counters.bytes_uploaded) + " served");
    if (me && me.map != null) state.maps.set(me.id, { cells: decodeMap(me.map, me.chunks), dirty: true, canvas: $("own-map") });
    renderSources(s);
  }
}

function renderSources(s) {
  const c = s.counters || {};
  const rows = [];
  if (s.master) rows.push(["Master", s.master]);
  for (const src of s.sources || []) rows.push([src.address || src.url || "source", fmtBytes(src.bytes || 0) + (src.active ? " · " + src.active + " active" : "")]);
  rows.push(["Serving at", s.listen || "–"], ["Folder", s.folder || "–"],
    ["Chunks fetched", String(c.chunk_gets_made || 0) + " (" + fmtBytes(c.bytes_downloaded || 0) + ")"],
    ["Copied locally", String(c.local_copies || 0)], ["Verification failures", String(c.verify_failures || 0)],
    ["Slow sources dropped", String(c.slow_aborts || 0)]);
  const dl = $("sources");
  const key = JSON.stringify(rows);
  if (dl.dataset.key === key) return;
  dl.dataset.key = key;
  dl.replaceChildren(...rows.flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: v }),
  ]));
}

// The master serves its last good index (folder gone, unreadable or shrunk): say why, and offer
// to publish a held shrink. The route needs the web token, which the page's cookie carries.
function renderFault(s) {
  const box = $("fault");
  if (!box) return;
  box.hidden = !s.index_fault;
  setText($("fault-text"), s.index_fault || "");
  const h = s.shrink_held;
  $("shrink-box").hidden = !h;
  if (!h) return;
  const btn = $("shrink-publish");
  btn.hidden = !!s.open;
  if (btn.dataset.held !== String(h.id)) {
    btn.dataset.held = String(h.id);
    setText($("shrink-note"), s.open
      ? "This swarm is open, so nobody can confirm from here: restart the master with --allow-shrink to publish it."
      : "Publishing makes every peer delete what the folder no longer holds: " + h.files_before + " → " + h.files_now +
        " files, " + fmtBytes(h.bytes_before) + " → " + fmtBytes(h.bytes_now) + ".");
  }
}

async function publishShrink() {
  const btn = $("shrink-publish");
  const id = btn.dataset.held;
  if (!id || !window.confirm("Publish the shrink? Every peer deletes the files the folder no longer holds.")) return;
  btn.disabled = true;
  try {
    const r = await fetch("/api/shrink?held=" + encodeURIComponent(id), { method: "POST", credentials: "same-origin" });
    setText($("shrink-note"), (await r.text()).trim());
  } catch (e) {
    setText($("shrink-note"), "the request failed (" + e + "); try again");
  }
  btn.disabled = false;
}

function render(s) {
  state.snap = s;
  renderFault(s);
  setText($("title-name"), s.name);
  $("open-swarm").hidden = !s.open;
  document.title = (PAGE === "master" ? "lanscatter · " : "lanscatter peer · ") + s.name + " · " + fmtPct(s.bytes_done, s.bytes_total);
  setPill($("state"), s.state, false);
  setText($("version"), "lanscatter " + (s.version || ""));
  if (state.freshConnection) { state.history = []; state.freshConnection = false; }
  if (s.history && s.history.length) {
    state.history.push(...s.history);
    const cut = state.history.length - 1200;
    if (cut > 0) state.history.splice(0, cut);
  }
  renderTotals(s);
  renderEvents(s.events || []);
  scheduleDraw();
}

// ---------- wiring ----------
function connect() {
  const es = new EventSource("/api/events");
  const live = $("live");
  es.onopen = () => { live.className = "live on"; setText(live, "live"); state.freshConnection = true; };
  es.onerror = () => { live.className = "live"; setText(live, "reconnecting…"); };
  es.addEventListener("status", (e) => {
    let s;
    try { s = JSON.parse(e.data); } catch (err) { console.error("bad status event", err); return; }
    render(s);
  });
}

window.addEventListener("resize", () => {
  for (const m of state.maps.values()) m.dirty = true;
  scheduleDraw();
});
if ($("filter")) {
  const reorder = () => { if (state.snap) { state.order = ""; applyOrder(state.snap); scheduleDraw(); } };
  $("filter").addEventListener("input", reorder);
  $("sort").addEventListener("change", reorder);
}
if ($("shrink-publish")) $("shrink-publish").addEventListener("click", publishShrink);
readColours();
connect();
