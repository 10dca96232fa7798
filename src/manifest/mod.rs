//! The folder index: files, dirs, fixed-size chunks and their BLAKE2b hashes.
//!
//! (placeholder: implemented by the index issue)
