//! The agent's managed block in `authorized_keys`: what it contains ([`merge`], pure) and
//! how it reaches the disk safely ([`mod@write`], I/O, through directories opened from `/`
//! as sshd's `StrictModes` judges them: [`path_walk`]).

pub mod command;
pub mod merge;
pub mod path_walk;
pub mod write;
