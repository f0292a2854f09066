//! The image's default login user, managed when the configuration has no `[[users]]`:
//! the readers of what it is chosen from (pure).
//!
//! - [`cloud_cfg`]: cloud-init's `system_info: default_user: name:` in one file.
//! - [`os_release`]: os-release's `ID`.

pub mod cloud_cfg;
pub mod os_release;
