//! What `/proc` says about sshd processes: alive, and the same process as before.

use std::path::Path;

use super::Session;

/// The process's start time (field 22 of `/proc/PID/stat`, clock ticks since boot).
pub fn start_time(pid: u32) -> Option<u64> {
    start_time_in(Path::new("/proc"), pid)
}

fn start_time_in(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(") ")?.1;
    rest.split(' ').nth(19)?.parse().ok()
}

/// The process's command name (`/proc/PID/comm`).
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// True while the session's monitor process is the same live sshd process.
pub fn session_alive(session: &Session) -> bool {
    let Some(started) = start_time(session.monitor_pid) else {
        return false;
    };
    if session
        .process_start
        .is_some_and(|recorded| recorded != started)
    {
        return false;
    }
    command_name(session.monitor_pid).is_some_and(|name| name == "sshd" || name == "sshd-session")
}

/// This boot's id (32 hex digits): from `PICTOR_BOOT_ID` (the unit passes systemd's
/// `%b`, since `ProcSubset=pid` hides /proc/sys), else from the kernel.
pub fn boot_id() -> String {
    let valid = |id: String| {
        let id = id.trim().replace('-', "").to_ascii_lowercase();
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    };
    std::env::var("PICTOR_BOOT_ID")
        .ok()
        .and_then(valid)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .and_then(valid)
        })
        .unwrap_or_else(|| "unknown-boot".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
        assert_eq!(boot_id().len(), 32);
    }
}
