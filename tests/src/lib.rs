//! Repository-level tests: shipped configuration and sample files, and
//! (with the live slice) end-to-end runs of the daemon.
