//! The master engine.
//!
//! (placeholder: implemented by the sync issue)
