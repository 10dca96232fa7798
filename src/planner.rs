//! Distribution planner: decides which node fetches which chunk from whom.
//!
//! (placeholder: implemented by the planner issue)
