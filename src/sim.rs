//! Swarm simulator: drives the planner in virtual time with a fluid bandwidth model.
//!
//! (placeholder: implemented by the planner issue)
