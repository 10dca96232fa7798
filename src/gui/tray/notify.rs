//! Desktop notifications for the tray ([`crate::gui::notices`] decides which).
//!
//! `notify-rust` speaks the freedesktop protocol over D-Bus on Linux/BSD (pure Rust, no libdbus),
//! Notification Center on macOS and toasts on Windows. Showing one is done off the main thread: a
//! D-Bus round trip to a slow or missing notification daemon must not stall the tray. A failure
//! (no daemon) is logged once per notice and otherwise ignored: the icon and the log still say it.

use serde_json::json;

use super::Tray;
use crate::gui::notices::{Kind, Notice};

impl Tray {
    pub(super) fn notify(&self, notice: &Notice) {
        self.out.log(&format!("notification: {}: {}", notice.summary, notice.body.replace('\n', " ")));
        self.out.event("notification", json!({ "kind": format!("{:?}", notice.kind), "summary": notice.summary }));
        let (notice, out) = (notice.clone(), self.out.clone());
        self.rt.spawn_blocking(move || {
            if let Err(e) = show(&notice) {
                out.log(&format!("cannot show a desktop notification ({e}); is a notification service running?"));
            }
        });
    }
}

fn show(notice: &Notice) -> Result<(), notify_rust::error::Error> {
    let mut n = notify_rust::Notification::new();
    n.appname("lanscatter").summary(&notice.summary).body(&notice.body);
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        n.urgency(match notice.kind {
            Kind::Complete => notify_rust::Urgency::Normal,
            Kind::Failed | Kind::Attention => notify_rust::Urgency::Critical,
        });
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    let _ = Kind::Complete;
    n.show().map(|_| ())
}
