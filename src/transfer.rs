//! HTTP chunk serving and fetching, compression and throttling.
//!
//! (placeholder: implemented by the sync issue)
