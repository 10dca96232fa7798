//! Versioned wire types of the master<->peer control channel.
//!
//! (placeholder: implemented by the sync issue)
