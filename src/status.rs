//! Status snapshots shared by the CLI, the web page and the tray app.
//!
//! (placeholder: implemented by the sync and web status issues)
