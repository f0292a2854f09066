//! The agent's managed block in `authorized_keys`: what it contains ([`merge`], pure) and
//! how it reaches the disk safely ([`mod@write`], I/O).

pub mod command;
pub mod merge;
pub mod write;
