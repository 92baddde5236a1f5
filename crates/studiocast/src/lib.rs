//! The studiocast binary's library half: command implementations and
//! configuration, so integration tests and other crates can reuse them.

pub mod accuracy;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod filters;
pub mod render;
