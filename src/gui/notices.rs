//! Which desktop notifications the tray app shows, decided from status changes.
//!
//! A person does not watch the tray icon: they want to be told when the sync is done, when it
//! failed, and when it needs them (a full disk, a secret the master refused, a master whose folder
//! went away). This module is pure (always compiled, unit-tested headless): [`Notices::update`]
//! compares each new [`StatusView`] with the last one and returns at most one [`Notice`] per
//! change, so a state that persists is announced once, not on every snapshot. Sending it is the
//! tray's job (`notify-rust`: freedesktop D-Bus on Linux, Notification Center on macOS, toasts on
//! Windows).

use super::config::Mode;
use super::view::StatusView;
use crate::status::NodeState;

/// Why a notification is shown (the freedesktop urgency and the test's check follow from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Complete,
    Failed,
    Attention,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: Kind,
    pub summary: String,
    pub body: String,
}

/// What was last announced, to announce each change once.
#[derive(Debug, Default)]
pub struct Notices {
    last: Option<NodeState>,
}

impl Notices {
    /// Forget the last state (a new engine starts): its first "up to date" is news again.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// The notice for this status, if it is a change worth telling the user about.
    pub fn update(&mut self, view: &StatusView) -> Option<Notice> {
        let now = view.phase.clone()?;
        let before = self.last.replace(now.clone());
        if before.as_ref() == Some(&now) {
            return None;
        }
        match now {
            NodeState::UpToDate => complete(view),
            NodeState::Error { message } => Some(trouble(view, &message)),
            _ => None,
        }
    }
}

fn complete(view: &StatusView) -> Option<Notice> {
    // A master is "up to date" with no peers too; only a real sync is news.
    if view.mode == Mode::Master && view.peers == 0 {
        return None;
    }
    let folder = view.folder.display();
    let body = match view.mode {
        Mode::Peer => format!("{folder} now matches the master's folder."),
        Mode::Master => format!("every peer ({}) has {folder}.", view.peers),
    };
    Some(Notice { kind: Kind::Complete, summary: "lanscatter: sync complete".into(), body })
}

/// A failure, or one of the failures a person can fix (then "needs attention" and what to do).
fn trouble(view: &StatusView, message: &str) -> Notice {
    let m = message.to_ascii_lowercase();
    let attention = if m.contains("disk") && (m.contains("full") || m.contains("space")) {
        Some("the disk is full: free some space; the sync goes on by itself")
    } else if m.contains("secret") || m.contains("refused") || m.contains("join code") {
        Some("the master refused this node: check the swarm secret (join code) in Settings…")
    } else if view.mode == Mode::Master
        && (m.contains("cannot index the source folder")
            || m.contains("folder") && ["gone", "vanished", "missing", "not found"].iter().any(|w| m.contains(w)))
    {
        Some("the shared folder is gone or unreadable: put it back or choose another folder")
    } else {
        None
    };
    match attention {
        Some(what) => Notice {
            kind: Kind::Attention,
            summary: "lanscatter needs attention".into(),
            body: format!("{message}\n\nWhat to do: {what}."),
        },
        None => Notice { kind: Kind::Failed, summary: "lanscatter: sync failed".into(), body: message.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(mode: Mode, phase: NodeState, peers: usize) -> StatusView {
        StatusView { phase: Some(phase), peers, folder: "/data/share".into(), ..StatusView::idle(mode) }
    }

    #[test]
    fn each_change_is_announced_once() {
        let mut n = Notices::default();
        assert_eq!(n.update(&view(Mode::Peer, NodeState::Syncing, 0)), None);
        let done = n.update(&view(Mode::Peer, NodeState::UpToDate, 0)).expect("complete");
        assert_eq!(done.kind, Kind::Complete);
        assert!(done.body.contains("/data/share"), "{done:?}");
        assert_eq!(n.update(&view(Mode::Peer, NodeState::UpToDate, 0)), None, "not again");
        n.update(&view(Mode::Peer, NodeState::Syncing, 0));
        assert!(n.update(&view(Mode::Peer, NodeState::UpToDate, 0)).is_some(), "a new sync is news");
        n.reset();
        assert!(n.update(&view(Mode::Peer, NodeState::UpToDate, 0)).is_some(), "a new engine is news");
    }

    #[test]
    fn a_master_without_peers_is_not_a_completed_sync() {
        let mut n = Notices::default();
        assert_eq!(n.update(&view(Mode::Master, NodeState::UpToDate, 0)), None);
        n.update(&view(Mode::Master, NodeState::Syncing, 2));
        assert_eq!(n.update(&view(Mode::Master, NodeState::UpToDate, 2)).map(|x| x.kind), Some(Kind::Complete));
    }

    #[test]
    fn failures_a_person_can_fix_say_what_to_do() {
        let cases = [
            (Mode::Peer, "cannot write chunk: No space left on device (disk full)", Kind::Attention, "free some space"),
            (
                Mode::Peer,
                "refused by the master at h:1: TLS handshake failed (wrong secret?)",
                Kind::Attention,
                "secret",
            ),
            (
                Mode::Master,
                "cannot index the source folder: not found. Keeping the last good index",
                Kind::Attention,
                "put it back",
            ),
            (Mode::Peer, "cannot talk to the master: protocol 3 vs 4", Kind::Failed, "protocol"),
        ];
        for (mode, msg, kind, says) in cases {
            let got = Notices::default().update(&view(mode, NodeState::Error { message: msg.into() }, 0)).unwrap();
            assert_eq!(got.kind, kind, "{msg}");
            assert!(got.body.contains(says) && got.body.contains(msg), "{got:?}");
        }
    }
}
