//! `GET /metrics`: a snapshot in the Prometheus text exposition format (version 0.0.4).
//!
//! Rendered from the same [`Snapshot`] as the page, on request, so scraping costs nothing
//! between scrapes. Per-node series carry `id`, `name` and `address` labels (the id keeps two
//! nodes with the same host name apart). Label values come from the network (peer names), so
//! they are escaped as the format requires (`\\`, `\"`, `\n`), and names of metrics are fixed.

use std::fmt::Write as _;

use crate::status::{ExpectState, NodeState, Snapshot};

/// Short state name used in labels and on the page.
pub fn state_name(s: &NodeState) -> &'static str {
    match s {
        NodeState::Starting => "starting",
        NodeState::Indexing { .. } => "indexing",
        NodeState::Connecting => "connecting",
        NodeState::Syncing => "syncing",
        NodeState::UpToDate => "up_to_date",
        NodeState::Error { .. } => "error",
    }
}

const STATES: [&str; 6] = ["starting", "indexing", "connecting", "syncing", "up_to_date", "error"];

/// Escape a label value for the text format.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Format a sample value (`NaN`, `+Inf`, `-Inf` spelled as Prometheus expects).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {}", num(v));
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {}", num(v));
        }
    }
    fn metric(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.head(name, kind, help);
        self.sample(name, "", v);
    }
}

/// Render the whole exposition.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(1024 + s.nodes.len() * 1200));
    render_identity(&mut o, s);
    render_progress(&mut o, s);
    render_counters(&mut o, s);
    render_source(&mut o, s);
    render_per_node(&mut o, s);
    render_expected(&mut o, s);
    o.0
}

/// Who this engine is and what state it and the swarm are in.
fn render_identity(o: &mut Out, s: &Snapshot) {
    let role = match s.role {
        crate::status::Role::Master => "master",
        crate::status::Role::Peer => "peer",
    };
    o.head("lanscatter_info", "gauge", "Constant 1, with the node's role, name and version as labels.");
    o.sample(
        "lanscatter_info",
        &format!("role=\"{role}\",name=\"{}\",version=\"{}\"", escape_label(&s.name), escape_label(crate::VERSION)),
        1.0,
    );
    o.head("lanscatter_state", "gauge", "1 for the engine's current state, 0 for the others.");
    let cur = state_name(&s.state);
    for st in STATES {
        o.sample("lanscatter_state", &format!("state=\"{st}\""), if st == cur { 1.0 } else { 0.0 });
    }
    o.head("lanscatter_nodes", "gauge", "Nodes in the swarm (the master included) by state.");
    for st in STATES {
        let n = s.nodes.iter().filter(|n| state_name(&n.state) == st).count();
        o.sample("lanscatter_nodes", &format!("state=\"{st}\""), n as f64);
    }
}

/// The manifest, how far the swarm is through it, and the rates it moves at.
fn render_progress(o: &mut Out, s: &Snapshot) {
    o.metric("lanscatter_manifest_id", "gauge", "Identifier of the current manifest.", s.manifest_id as f64);
    o.metric("lanscatter_files", "gauge", "Files in the current manifest.", s.files_total as f64);
    o.metric(
        "lanscatter_bytes_target",
        "gauge",
        "Bytes to hold when done (master: unique chunk bytes times peers; peer: unique chunk bytes).",
        s.bytes_total as f64,
    );
    o.metric(
        "lanscatter_bytes_done",
        "gauge",
        "Verified bytes held so far (master: summed over peers).",
        s.bytes_done as f64,
    );
    o.metric(
        "lanscatter_progress_ratio",
        "gauge",
        "bytes_done / bytes_target (1 when there is nothing to do).",
        s.progress(),
    );
    if let Some(eta) = s.eta_secs {
        o.metric("lanscatter_eta_seconds", "gauge", "Estimated seconds until every node is up to date.", eta);
    }
    o.metric("lanscatter_download_bytes_per_second", "gauge", "Aggregate download rate.", s.download_bps);
    o.metric("lanscatter_upload_bytes_per_second", "gauge", "This engine's upload rate.", s.upload_bps);
    o.metric(
        "lanscatter_master_uploaded_bytes_total",
        "counter",
        "Chunk bytes served by the master.",
        s.master_uploaded as f64,
    );
    o.metric(
        "lanscatter_peers_uploaded_bytes_total",
        "counter",
        "Chunk bytes peers served to each other.",
        s.peers_uploaded as f64,
    );
}

/// This node's own event counters (and, on the master, the planner's timing).
fn render_counters(o: &mut Out, s: &Snapshot) {
    let c = &s.counters;
    o.metric(
        "lanscatter_chunk_gets_served_total",
        "counter",
        "Chunk requests this node answered with data.",
        c.chunk_gets_served as f64,
    );
    o.metric(
        "lanscatter_uploaded_bytes_total",
        "counter",
        "Chunk bytes sent by this node's HTTP server.",
        c.bytes_uploaded as f64,
    );
    o.metric(
        "lanscatter_chunk_gets_made_total",
        "counter",
        "Chunk fetches this node started.",
        c.chunk_gets_made as f64,
    );
    o.metric(
        "lanscatter_downloaded_bytes_total",
        "counter",
        "Chunk bytes this node received.",
        c.bytes_downloaded as f64,
    );
    o.metric(
        "lanscatter_chunk_verify_failures_total",
        "counter",
        "Chunks received whose hash did not match (never written).",
        c.verify_failures as f64,
    );
    o.metric(
        "lanscatter_local_copies_total",
        "counter",
        "Chunks satisfied by copying identical local content.",
        c.local_copies as f64,
    );
    o.metric(
        "lanscatter_slow_aborts_total",
        "counter",
        "Fetches aborted for stalling or being too slow.",
        c.slow_aborts as f64,
    );
    if s.role == crate::status::Role::Master {
        o.head("lanscatter_planner_round_seconds", "summary", "Time the planner spent per scheduling round.");
        o.sample("lanscatter_planner_round_seconds_sum", "", c.planner_round_seconds);
        o.sample("lanscatter_planner_round_seconds_count", "", c.planner_rounds as f64);
    }
}

/// Master: whether the index it serves is the folder as it reads (and why not); peer: what
/// new manifests did to its fetches in flight.
fn render_source(o: &mut Out, s: &Snapshot) {
    let c = &s.counters;
    if s.role == crate::status::Role::Peer {
        let help = "Fetches in flight that a new manifest cancelled (their chunk left it).";
        o.metric("lanscatter_fetches_cancelled_total", "counter", help, c.fetches_cancelled as f64);
        let help = "Fetches in flight that went on across a new manifest (it still holds their chunk).";
        o.metric("lanscatter_fetches_kept_total", "counter", help, c.fetches_kept as f64);
        return;
    }
    o.head(
        "lanscatter_index_fault",
        "gauge",
        "1 while the master serves its last good index because the folder vanished, cannot be read or shrank; the reason is a label.",
    );
    match &s.index_fault {
        Some(why) => o.sample("lanscatter_index_fault", &format!("reason=\"{}\"", escape_label(why)), 1.0),
        None => o.sample("lanscatter_index_fault", "", 0.0),
    }
    let held = f64::from(u8::from(s.shrink_held.is_some()));
    o.metric("lanscatter_shrink_held", "gauge", "1 while a shrink of the folder waits for confirmation.", held);
    let help = "Scans of the source folder finished (published, unchanged or failed).";
    o.metric("lanscatter_index_scans_total", "counter", help, c.index_scans as f64);
}

/// One series per node for each per-node field, labelled so nodes sharing a host name stay apart.
fn render_per_node(o: &mut Out, s: &Snapshot) {
    type Field = fn(&crate::status::NodeStatus) -> f64;
    let per_node: [(&str, &str, &str, Field); 8] = [
        ("lanscatter_node_up", "gauge", "1 unless the node is disconnected or in error.", |n| {
            f64::from(u8::from(!matches!(n.state, NodeState::Error { .. })))
        }),
        ("lanscatter_node_bytes_done", "gauge", "Verified bytes the node holds (its download progress).", |n| {
            n.bytes_done as f64
        }),
        ("lanscatter_node_bytes_target", "gauge", "Bytes the node holds when up to date.", |n| n.bytes_total as f64),
        ("lanscatter_node_uploaded_bytes_total", "counter", "Chunk bytes the node uploaded to others.", |n| {
            n.bytes_uploaded as f64
        }),
        ("lanscatter_node_download_bytes_per_second", "gauge", "The node's download rate.", |n| n.download_bps),
        ("lanscatter_node_upload_bytes_per_second", "gauge", "The node's upload rate.", |n| n.upload_bps),
        ("lanscatter_node_active_downloads", "gauge", "Chunk downloads in flight to the node.", |n| {
            f64::from(n.active_downloads)
        }),
        ("lanscatter_node_active_uploads", "gauge", "Chunk uploads in flight from the node.", |n| {
            f64::from(n.active_uploads)
        }),
    ];
    let labels: Vec<String> = s
        .nodes
        .iter()
        .map(|n| {
            format!(
                "id=\"{}\",name=\"{}\",address=\"{}\",role=\"{}\"",
                n.id,
                escape_label(&n.name),
                escape_label(&n.address),
                if n.is_master { "master" } else { "peer" }
            )
        })
        .collect();
    for (name, kind, help, f) in per_node {
        o.head(name, kind, help);
        for (n, l) in s.nodes.iter().zip(&labels) {
            o.sample(name, l, f(n));
        }
    }
}

/// A master started with `--expect`: how many expected peers are in each state, and each entry.
fn render_expected(o: &mut Out, s: &Snapshot) {
    let Some(e) = &s.expected else { return };
    o.head("lanscatter_expected_peers", "gauge", "Expected peers (--expect) by state: done, syncing, stuck, missing.");
    for st in ExpectState::ALL {
        o.sample("lanscatter_expected_peers", &format!("state=\"{}\"", st.name()), f64::from(e.count(st)));
    }
    o.head(
        "lanscatter_expected_peer",
        "gauge",
        "Constant 1 per expected-peer entry, with its current state as a label.",
    );
    for p in &e.peers {
        let labels = format!(
            "want=\"{}\",name=\"{}\",state=\"{}\"",
            escape_label(&p.want),
            escape_label(&p.name),
            p.state.name()
        );
        o.sample("lanscatter_expected_peer", &labels, 1.0);
    }
    o.metric(
        "lanscatter_unexpected_peers",
        "gauge",
        "Connected peers that answer to no entry of the expected list.",
        e.unexpected.len() as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{NodeStatus, Role};

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain é"), "plain é");
    }

    #[test]
    fn renders_hostile_names_on_one_line_each() {
        let mut s = Snapshot::new(Role::Master, "m\"}\n x 1".into(), "/x".into());
        s.nodes.push(NodeStatus { id: 3, name: "evil\"} 1\nfake_metric 2".into(), ..Default::default() });
        s.eta_secs = Some(f64::INFINITY);
        let text = render(&s);
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with(" x")), "{text}");
        assert!(text.contains("name=\"evil\\\"} 1\\nfake_metric 2\""), "{text}");
        assert!(text.contains("lanscatter_eta_seconds +Inf"));
        assert!(text.contains("lanscatter_node_up{id=\"3\""));
        assert!(!text.contains("lanscatter_expected_peers"), "no --expect, no series");
    }

    #[test]
    fn renders_expected_peers_by_state() {
        use crate::status::{ExpectedPeer, ExpectedReport};
        let mut s = Snapshot::new(Role::Master, "m".into(), "/x".into());
        let peer = |want: &str, state| ExpectedPeer {
            want: want.into(),
            state,
            node: None,
            name: String::new(),
            address: String::new(),
            idle_secs: None,
        };
        s.expected = Some(ExpectedReport {
            peers: vec![peer("alpha", ExpectState::Done), peer("be\"ta", ExpectState::Missing)],
            done: 1,
            missing: 1,
            unexpected: vec!["x".into()],
            ..Default::default()
        });
        let text = render(&s);
        for line in [
            "lanscatter_expected_peers{state=\"done\"} 1",
            "lanscatter_expected_peers{state=\"stuck\"} 0",
            "lanscatter_expected_peers{state=\"missing\"} 1",
            "lanscatter_expected_peer{want=\"be\\\"ta\",name=\"\",state=\"missing\"} 1",
            "lanscatter_unexpected_peers 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }

    #[test]
    fn an_index_fault_is_a_gauge_with_its_reason() {
        let mut s = Snapshot::new(Role::Master, "m".into(), "/x".into());
        assert!(render(&s).contains("\nlanscatter_index_fault 0\n"));
        s.index_fault = Some("cannot index the source folder: \"/x\" is gone".into());
        s.counters.index_scans = 7;
        let text = render(&s);
        assert!(
            text.contains("lanscatter_index_fault{reason=\"cannot index the source folder: \\\"/x\\\" is gone\"} 1")
        );
        assert!(text.contains("lanscatter_index_scans_total 7"), "{text}");
        assert!(text.contains("lanscatter_shrink_held 0"));
    }
}
