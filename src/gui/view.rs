//! What the tray shows, computed from engine status: icon, tooltip, menu status line.
//!
//! Pure functions over [`StatusView`], a small GUI-side digest of the engine's status snapshot,
//! so the presentation rules are unit-tested without a display and the tray code only copies
//! strings and pixels into widgets. The digest also decouples the GUI from fields of the
//! engine's snapshot it does not need.

use std::path::PathBuf;

use super::config::Mode;
use crate::status::NodeState;

/// The engine's state as the tray presents it: `None` while no engine runs.
pub type Phase = Option<NodeState>;

/// GUI-side digest of one engine status snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub mode: Mode,
    pub phase: Phase,
    pub folder: PathBuf,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub download_bps: f64,
    pub upload_bps: f64,
    pub eta_secs: Option<f64>,
    /// Address the engine listens on (`host:port`), empty if unknown.
    pub listen: String,
    /// Master: connected peers. Peer: unused (0).
    pub peers: usize,
}

impl StatusView {
    pub fn idle(mode: Mode) -> Self {
        StatusView {
            mode,
            phase: None,
            folder: PathBuf::new(),
            bytes_done: 0,
            bytes_total: 0,
            download_bps: 0.0,
            upload_bps: 0.0,
            eta_secs: None,
            listen: String::new(),
            peers: 0,
        }
    }

    /// Progress 0..=1 of the current phase (indexing or syncing).
    pub fn fraction(&self) -> f64 {
        let (done, total) = match self.phase {
            Some(NodeState::Indexing { done, total }) => (done, total),
            _ => (self.bytes_done, self.bytes_total),
        };
        if total == 0 {
            if self.phase == Some(NodeState::UpToDate) {
                1.0
            } else {
                0.0
            }
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        }
    }
}

/// Which of the embedded icons to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconKind {
    Idle,
    /// Progress frame 0..=8 (eighths done); the frames are `assets/tray-syncing-N.png`.
    Syncing(u8),
    UpToDate,
    Error,
}

pub fn icon_kind(v: &StatusView) -> IconKind {
    match v.phase {
        None => IconKind::Idle,
        Some(NodeState::Error { .. }) => IconKind::Error,
        Some(NodeState::UpToDate) => IconKind::UpToDate,
        Some(NodeState::Starting) | Some(NodeState::Connecting) => IconKind::Syncing(0),
        Some(NodeState::Indexing { .. }) | Some(NodeState::Syncing) => {
            // Floor, so "8/8" (full) appears only when really complete.
            IconKind::Syncing((v.fraction() * 8.0).floor().min(8.0) as u8)
        }
    }
}

/// One-line status for the top of the menu.
pub fn status_line(v: &StatusView) -> String {
    let role = match v.mode {
        Mode::Peer => "Peer",
        Mode::Master => "Master",
    };
    let pct = (v.fraction() * 100.0).floor();
    match &v.phase {
        None => "Stopped".to_string(),
        Some(NodeState::Starting) => format!("{role}: starting"),
        Some(NodeState::Indexing { .. }) => format!("{role}: indexing {pct}%"),
        Some(NodeState::Connecting) => format!("{role}: connecting"),
        Some(NodeState::Syncing) => match v.mode {
            Mode::Peer => {
                format!("Peer: syncing {pct}% · ↓ {} · {}", format_rate(v.download_bps), format_eta(v.eta_secs))
            }
            Mode::Master => format!("Master: {} at {pct}% · ↑ {}", peer_count(v.peers), format_rate(v.upload_bps)),
        },
        Some(NodeState::UpToDate) => match v.mode {
            Mode::Peer => "Peer: up to date".to_string(),
            // "0 peer(s) up to date" read as a problem in the menu; a master alone is just waiting.
            Mode::Master if v.peers == 0 => "Master: serving, no peers yet".to_string(),
            Mode::Master => format!("Master: serving, {} up to date", peer_count(v.peers)),
        },
        Some(NodeState::Error { message: e }) => format!("{role} error: {}", truncate(e, 120)),
    }
}

fn peer_count(n: usize) -> String {
    if n == 1 {
        "1 peer".to_string()
    } else {
        format!("{n} peers")
    }
}

/// Tooltip: mode, folder, progress, rates, ETA. Kept short: some trays cut long tooltips.
pub fn tooltip(v: &StatusView) -> String {
    let mut t = format!("lanscatter — {}", status_line(v));
    if v.phase.is_some() && !v.folder.as_os_str().is_empty() {
        t.push_str(&format!("\nFolder: {}", v.folder.display()));
    }
    if matches!(v.phase, Some(NodeState::Syncing) | Some(NodeState::UpToDate)) && v.bytes_total > 0 {
        t.push_str(&format!(
            "\n{} of {} ({:.0}%)",
            format_bytes(v.bytes_done),
            format_bytes(v.bytes_total),
            v.fraction() * 100.0
        ));
        t.push_str(&format!("\n↓ {} ↑ {}", format_rate(v.download_bps), format_rate(v.upload_bps)));
    }
    t
}

pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Rates read the same in the tray as on the status page and in the plain output.
pub fn format_rate(bytes_per_sec: f64) -> String {
    crate::units::human_rate(bytes_per_sec)
}

pub fn format_eta(eta: Option<f64>) -> String {
    match eta {
        Some(s) if s.is_finite() && s >= 0.0 => {
            let s = s.round() as u64;
            if s >= 3600 {
                format!("ETA {}h{:02}m", s / 3600, (s % 3600) / 60)
            } else if s >= 60 {
                format!("ETA {}m{:02}s", s / 60, s % 60)
            } else {
                format!("ETA {s}s")
            }
        }
        _ => "ETA —".into(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syncing(done: u64, total: u64) -> StatusView {
        StatusView {
            phase: Some(NodeState::Syncing),
            bytes_done: done,
            bytes_total: total,
            ..StatusView::idle(Mode::Peer)
        }
    }

    #[test]
    fn icon_follows_phase_and_progress() {
        assert_eq!(icon_kind(&StatusView::idle(Mode::Peer)), IconKind::Idle);
        assert_eq!(icon_kind(&syncing(0, 100)), IconKind::Syncing(0));
        assert_eq!(icon_kind(&syncing(50, 100)), IconKind::Syncing(4));
        assert_eq!(icon_kind(&syncing(99, 100)), IconKind::Syncing(7));
        assert_eq!(icon_kind(&syncing(100, 100)), IconKind::Syncing(8));
        let mut v = syncing(10, 100);
        v.phase = Some(NodeState::Error { message: "disk full".into() });
        assert_eq!(icon_kind(&v), IconKind::Error);
        v.phase = Some(NodeState::UpToDate);
        assert_eq!(icon_kind(&v), IconKind::UpToDate);
    }

    #[test]
    fn texts() {
        let mut v = syncing(512 * 1024, 1024 * 1024);
        v.download_bps = 2.5 * 1024.0 * 1024.0;
        v.eta_secs = Some(75.0);
        v.folder = PathBuf::from("/data/x");
        assert_eq!(status_line(&v), "Peer: syncing 50% · ↓ 2.62 MB/s · ETA 1m15s");
        let t = tooltip(&v);
        assert!(t.contains("/data/x") && t.contains("512.0 KiB of 1.0 MiB (50%)"), "{t}");
        v.phase = Some(NodeState::Error { message: "connection refused".into() });
        assert_eq!(status_line(&v), "Peer error: connection refused");
        assert_eq!(status_line(&StatusView::idle(Mode::Master)), "Stopped");
        let mut m = StatusView { phase: Some(NodeState::UpToDate), ..StatusView::idle(Mode::Master) };
        assert_eq!(status_line(&m), "Master: serving, no peers yet");
        m.peers = 1;
        assert_eq!(status_line(&m), "Master: serving, 1 peer up to date");
        m.peers = 3;
        assert_eq!(status_line(&m), "Master: serving, 3 peers up to date");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(5), "5 B");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(format_rate(0.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "0 B/s");
        assert_eq!(format_eta(None), "ETA —");
        assert_eq!(format_eta(Some(7300.0)), "ETA 2h01m");
        assert_eq!(format_eta(Some(9.4)), "ETA 9s");
    }
}
