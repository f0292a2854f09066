//! Integration and system tests: the real agent binary against the reference control
//! plane, real files, real signals, and the real OpenSSH sshd and ssh.

mod account_page;
mod attacks;
mod crash;
mod cross_site;
mod failures;
mod forgery;
mod host_keys;
#[path = "../shared/key_cases.rs"]
mod key_cases;
mod keys;
mod labels;
mod modes;
mod revocation;
mod sessions;
mod sshd;
mod sync;
#[path = "../shared/synthetic_key.rs"]
mod synthetic_key;
