//! Chunk I/O inside a sync dir.
//!
//! (placeholder: implemented by the sync issue)
