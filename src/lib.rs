//! lanscatter: a P2P-assisted, server-driven, one-way folder synchronizer.
//!
//! One master indexes a read-only source folder and coordinates a swarm of peers over a websocket;
//! peers fetch verified chunks from the master or from each other as the master's planner directs,
//! until every peer's folder is byte-identical to the master's.
//!
//! Layers, bottom-up:
//! - [`paths`]: wire-path validation; every write a peer makes goes through it.
//! - [`folders`]: the one refusal of dangerous folders (roots, home, system folders).
//! - [`units`]: the one parser of sizes and rates (CLI, GUI, settings files).
//! - [`manifest`]: scan, chunk, hash (BLAKE2b), hash cache, manifest diff.
//! - [`planner`]: pure, deterministic transfer scheduling (no I/O, time is an input);
//!   [`sim`] drives it in virtual time.
//! - [`protocol`]: versioned wire types of the control channel.
//! - [`storage`]: the seam every byte an engine reads or writes in its folder goes through.
//! - [`transfer`]: the chunk route, compression, throttling.
//! - [`transport`]: every connection made or accepted (serve loop, chunk client, control channel),
//!   addresses and URLs.
//! - [`host`]: host name and wall clock, shared below both engines.
//! - [`master`] and [`peer`]: the async engines, siblings that share only what lies below them.
//! - [`proxy`]: the relay engine, a peer upstream and a master downstream over one folder.
//! - [`engine`]: the one facade (start, status stream, shutdown) that CLI, GUI and tests use.
//! - [`status`]: status snapshots (one source of truth for CLI, web page and tray).
//! - [`web`]: the live status page, `/api/status` JSON, SSE stream and Prometheus `/metrics`.
//! - [`demo`]: a master and peers in one process on loopback, checked byte for byte
//!   (`lanscatter demo`).
//! - [`cli`]: argument parsing and the multicall entry point.

pub mod cli;
pub mod demo;
pub mod engine;
pub mod folders;
pub mod gui;
pub mod host;
pub mod manifest;
pub mod master;
pub mod paths;
pub mod peer;
pub mod planner;
pub mod protocol;
pub mod proxy;
pub mod secret;
pub mod sim;
pub mod status;
pub mod storage;
pub mod transfer;
pub mod transport;
pub mod units;
pub mod web;

/// Version string shown by `--version`, including the git revision when built from a checkout.
pub const VERSION: &str = env!("LANSCATTER_VERSION");
