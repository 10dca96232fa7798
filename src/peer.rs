//! The peer engine.
//!
//! (placeholder: implemented by the sync issue)
