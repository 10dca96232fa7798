//! Relative wire paths: validation and conversion to local paths.
//!
//! (placeholder: implemented by the index issue)
