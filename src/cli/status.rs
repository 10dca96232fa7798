//! `lanscatter status <master>`: ask a running master how the rollout goes.
//!
//! Fetches the master's `/api/status?maps=none` over its web port (through
//! [`crate::transport::api`], the one client of the web routes) and prints the swarm as a table:
//! a header line (state, files, bytes, how many peers are done, progress, rate, ETA), one row per
//! node, and, for a master started with `--expect`, the expected peers. `--json` prints the raw
//! JSON instead (for scripts); `--watch` asks again every second until Ctrl-C, redrawing the
//! screen on a terminal and reprinting otherwise.
//!
//! A secured master's web routes want its web token, derived from the swarm secret: `status`
//! takes the peer's `--secret`/`--secret-file`/`LANSCATTER_SECRET`, or the status page URL the
//! master printed (`http://host:port/?token=…`), and on the master's own host with none of those
//! it uses the machine's stored secret. Exit codes: 0 answered, 1 unreachable, refused or not a
//! lanscatter answer, 2 bad usage.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::secret::SwarmSecret;
use crate::status::{ExpectState, ExpectedReport, NodeState, NodeStatus, Role, Snapshot};
use crate::transport::{api, normalize_addr, MASTER_PORT};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer accepted (`maps=none` of a 1,000-node swarm is well under 1 MB).
const MAX_BODY: usize = 32 << 20;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The master: `host`, `host:port` (default port 10564), or the status page URL it printed.
    pub master: String,
    /// Print the raw `/api/status?maps=none` JSON (with --watch, one line per second).
    #[arg(long)]
    pub json: bool,
    /// Ask again every second until Ctrl-C (redraws on a terminal, reprints otherwise).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub security: super::node::SecurityArgs,
}

/// Where to ask and with which web token.
struct Target {
    hostport: String,
    token: Option<String>,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        if !args.watch {
            print!("{}", answer(&target, args.json).await?);
            return Ok(ExitCode::SUCCESS);
        }
        watch(&target, args.json).await
    })
}

/// The address and token from the arguments: `--secret`/`--secret-file` first, then a `?token=`
/// in the address, then (unless `--open`) the machine's stored secret.
fn target(args: &StatusArgs) -> anyhow::Result<Target> {
    let input = args.master.trim();
    let (addr, query) = input.split_once('?').map_or((input, None), |(a, q)| (a, Some(q)));
    let from_url = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token="))).map(str::to_string);
    let hostport = normalize_addr(addr, MASTER_PORT)?;
    let token = match args.security.given()? {
        Some(s) => Some(s.web_token()),
        None if from_url.is_some() => from_url,
        None if args.security.open => None,
        None => stored_token(),
    };
    Ok(Target { hostport, token })
}

/// The web token of this machine's stored secret, if a master here made one.
fn stored_token() -> Option<String> {
    let dir = SwarmSecret::default_dir().ok()?;
    match SwarmSecret::load_stored(&dir) {
        Ok(s) => s.map(|s| s.web_token()),
        Err(e) => {
            tracing::warn!("not using the stored swarm secret: {e}");
            None
        }
    }
}

/// Ask once; the text to print (raw JSON, or the table).
async fn answer(t: &Target, json: bool) -> anyhow::Result<String> {
    let r = api::get(&t.hostport, "/api/status?maps=none", t.token.as_deref(), TIMEOUT, MAX_BODY).await?;
    match r.status {
        200 => {}
        401 | 403 if t.token.is_some() => anyhow::bail!(
            "{} refused the status request (HTTP {}): the swarm secret given is not this swarm's; pass the one the \
             master printed with --secret (or --secret-file, LANSCATTER_SECRET), or its status page URL with ?token=",
            t.hostport,
            r.status
        ),
        401 | 403 => anyhow::bail!(
            "{} refused the status request (HTTP {}): its swarm is secured; pass the swarm secret with --secret \
             <join-code> (or --secret-file, LANSCATTER_SECRET), or the status page URL the master printed (it ends \
             in ?token=…)",
            t.hostport,
            r.status
        ),
        code => anyhow::bail!(
            "{} answered HTTP {code} for /api/status ({}); is that a lanscatter master of a matching version?",
            t.hostport,
            clean(String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).trim())
        ),
    }
    let snap: Snapshot = serde_json::from_slice(&r.body).with_context(|| {
        format!(
            "{} answered /api/status with something that is not a lanscatter status; is that a lanscatter master?",
            t.hostport
        )
    })?;
    if json {
        let mut text = String::from_utf8_lossy(&r.body).trim_end().to_string();
        text.push('\n');
        return Ok(text);
    }
    Ok(render(&snap))
}

/// `--watch`: ask every second until Ctrl-C. The first failure ends it (exit 1); later ones are
/// reported and retried, since a master may be restarting.
async fn watch(t: &Target, json: bool) -> anyhow::Result<ExitCode> {
    let redraw = !json && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tick.tick() => {}
        }
        match answer(t, json).await {
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                if redraw {
                    // Home and clear, then the table and a hint.
                    write!(out, "\x1b[H\x1b[2J{text}\n(every second; Ctrl-C stops)\n")?;
                } else if json || first {
                    write!(out, "{text}")?;
                } else {
                    write!(out, "\n{text}")?;
                }
                out.flush()?;
            }
            Err(e) if first => return Err(e),
            Err(e) => eprintln!("lanscatter status: {}; retrying", super::error_text(&e)),
        }
        first = false;
    }
}

/// The table: a header line, one row per node, then the expected peers if any.
pub fn render(s: &Snapshot) -> String {
    let mut out = header(s);
    out.push('\n');
    let mut rows =
        vec![["NAME", "ADDRESS", "ROLE", "STATE", "PROGRESS", "DOWN", "UP", "ETA", "ERROR"].map(String::from)];
    rows.extend(s.nodes.iter().map(node_row));
    table(&mut out, &rows);
    if let Some(e) = &s.expected {
        out.push('\n');
        expected(&mut out, e);
    }
    out
}

fn header(s: &Snapshot) -> String {
    let role = match s.role {
        Role::Master => "master",
        Role::Peer => "peer",
    };
    let peers: Vec<&NodeStatus> = s.nodes.iter().filter(|n| !n.is_master).collect();
    let done = peers.iter().filter(|n| n.state == NodeState::UpToDate).count();
    let mut h = format!(
        "{role} {} ({}): {}{} · {} files, {} · {done}/{} peers up to date · {} · down {}",
        clean(&s.name),
        clean(&s.listen),
        s.state.label(),
        if s.open { " (open swarm)" } else { "" },
        s.files_total,
        crate::units::human_size(s.folder_bytes),
        peers.len(),
        percent(s.bytes_done, s.bytes_total),
        rate(s.download_bps),
    );
    if let Some(eta) = s.eta_secs {
        let _ = write!(h, " · ETA {}", duration(eta));
    }
    if let NodeState::Error { message } = &s.state {
        let _ = write!(h, "\nerror: {}", clean(message));
    }
    if let Some(d) = &s.detail {
        let _ = write!(h, "\n{}", clean(d));
    }
    h
}

fn node_row(n: &NodeStatus) -> [String; 9] {
    let left = n.bytes_total.saturating_sub(n.bytes_done);
    let eta = if n.state != NodeState::UpToDate && left > 0 && n.download_bps >= 1.0 {
        duration(left as f64 / n.download_bps)
    } else {
        "-".into()
    };
    let error = match &n.state {
        NodeState::Error { message } => clean(message),
        _ => String::new(),
    };
    [
        clean(&n.name).chars().take(32).collect(),
        clean(&n.address),
        if n.is_master { "master" } else { "peer" }.into(),
        n.state.label().into(),
        percent(n.bytes_done, n.bytes_total),
        rate(n.download_bps),
        rate(n.upload_bps),
        eta,
        error,
    ]
}

fn expected(out: &mut String, e: &ExpectedReport) {
    let _ = writeln!(
        out,
        "expected peers: {} done, {} syncing, {} stuck, {} missing (stuck: no progress for {})",
        e.done,
        e.syncing,
        e.stuck,
        e.missing,
        duration(e.stuck_after_secs)
    );
    let mut rows = vec![["EXPECTED", "STATE", "NODE", "ADDRESS", "IDLE"].map(String::from)];
    for p in &e.peers {
        rows.push([
            clean(&p.want),
            p.state.name().into(),
            clean(&p.name),
            clean(&p.address),
            // Idle time only tells something about a peer that is not done.
            p.idle_secs.filter(|_| p.state != ExpectState::Done).map_or_else(|| "-".into(), duration),
        ]);
    }
    table(out, &rows);
    if !e.unexpected.is_empty() {
        let names: Vec<String> = e.unexpected.iter().map(|n| clean(n)).collect();
        let _ = writeln!(out, "not expected: {}", names.join(", "));
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < N {
                let _ = write!(line, "{c:<w$}  ", w = width[i]);
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Names and messages come from the network: no control characters reach the terminal.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn percent(done: u64, total: u64) -> String {
    if total == 0 || done >= total {
        return "100 %".into();
    }
    // Rounded down, so 99.99 % never shows as 100 %.
    format!("{:.1} %", (done as f64 * 1000.0 / total as f64).floor() / 10.0)
}

/// Bytes per second in decimal units, as the status page shows them.
fn rate(bps: f64) -> String {
    let bps = if bps.is_finite() { bps.max(0.0) } else { 0.0 };
    for (unit, name) in [(1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")] {
        if bps >= unit {
            return format!("{:.1} {name}", bps / unit);
        }
    }
    format!("{bps:.0} B/s")
}

fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ExpectedPeer;

    fn swarm() -> Snapshot {
        let mut s = Snapshot::new(Role::Master, "files".into(), "/srv".into());
        s.listen = "10.0.0.1:10564".into();
        s.state = NodeState::Syncing;
        (s.files_total, s.folder_bytes, s.bytes_total, s.bytes_done) = (3, 3 << 30, 200, 150);
        s.download_bps = 12_345_678.0;
        s.eta_secs = Some(125.0);
        let node = |id, name: &str, state, done, bps| NodeStatus {
            id,
            name: name.into(),
            address: format!("10.0.0.{id}:10565"),
            state,
            bytes_done: done,
            bytes_total: 100,
            download_bps: bps,
            ..Default::default()
        };
        s.nodes = vec![
            NodeStatus { is_master: true, ..node(0, "files", NodeState::UpToDate, 100, 0.0) },
            node(1, "alpha", NodeState::UpToDate, 100, 0.0),
            node(2, "beta\x1b[2J", NodeState::Error { message: "disk full\nbad".into() }, 50, 25.0),
        ];
        s
    }

    #[test]
    fn the_table_has_a_header_and_a_row_per_node() {
        let text = render(&swarm());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "master files (10.0.0.1:10564): syncing · 3 files, 3 GiB · 1/2 peers up to date · 75.0 % · down 12.3 MB/s \
             · ETA 2 min 5 s"
        );
        assert!(lines[1].starts_with("NAME  "), "{text}");
        assert!(lines[2].contains("master") && lines[2].contains("up to date"), "{text}");
        assert!(lines[3].starts_with("alpha ") && lines[3].contains("100 %"), "{text}");
        assert!(lines[4].contains("error") && lines[4].contains("50.0 %"), "{text}");
        assert!(lines[4].ends_with("2 s  disk full bad"), "ETA 50 B at 25 B/s, then the error: {text}");
        assert!(!text.contains('\x1b'), "control characters from the network are dropped");
        assert_eq!(lines.len(), 5, "no expected section without --expect");
    }

    #[test]
    fn expected_peers_follow_the_nodes() {
        let mut s = swarm();
        let p = |want: &str, state, name: &str, idle| ExpectedPeer {
            want: want.into(),
            state,
            node: None,
            name: name.into(),
            address: String::new(),
            idle_secs: idle,
        };
        s.expected = Some(ExpectedReport {
            peers: vec![p("alpha", ExpectState::Done, "alpha", Some(3.0)), p("gamma", ExpectState::Missing, "", None)],
            done: 1,
            missing: 1,
            unexpected: vec!["beta".into()],
            stuck_after_secs: 60.0,
            ..Default::default()
        });
        let text = render(&s);
        assert!(
            text.contains("expected peers: 1 done, 0 syncing, 0 stuck, 1 missing (stuck: no progress for 1 min 0 s)")
        );
        assert!(text.lines().any(|l| l.starts_with("gamma") && l.contains("missing")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("alpha") && l.ends_with("  -")), "no idle time when done: {text}");
        assert!(text.ends_with("not expected: beta\n"), "{text}");
    }

    #[test]
    fn units_read_as_on_the_page() {
        assert_eq!(rate(0.0), "0 B/s");
        assert_eq!(rate(f64::NAN), "0 B/s");
        assert_eq!(rate(999.0), "999 B/s");
        assert_eq!(rate(12_500_000.0), "12.5 MB/s");
        assert_eq!(percent(9999, 10000), "99.9 %");
        assert_eq!(percent(0, 0), "100 %");
        assert_eq!(duration(59.4), "59 s");
        assert_eq!(duration(3725.0), "1 h 2 min");
    }

    #[test]
    fn addresses_and_tokens_come_from_the_arguments() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: StatusArgs,
        }
        let t = |args: &[&str]| target(&T::parse_from(std::iter::once("t").chain(args.iter().copied())).a).unwrap();
        let u = t(&["http://files:99/?token=abc", "--open"]);
        assert_eq!((u.hostport.as_str(), u.token.as_deref()), ("files:99", Some("abc")));
        let s = t(&["files", "--secret", "a long enough swarm secret"]);
        assert_eq!(s.hostport, "files:10564");
        let want = SwarmSecret::parse("a long enough swarm secret").unwrap().web_token();
        assert_eq!(s.token, Some(want), "the secret's web token wins over a URL's");
        assert_eq!(t(&["files", "--open"]).token, None);
    }
}
