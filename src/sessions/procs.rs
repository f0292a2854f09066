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

/// The process's start time in ticks, if it started no later than `at` (with a little
/// slack for clocks): a process that started after a login logged at `at` is not that
/// login's, whatever its pid.
pub fn start_time_if_started_by(pid: u32, at: time::OffsetDateTime) -> Option<u64> {
    let ticks = start_time(pid)?;
    // Checked: `at` comes from a log line, which may say the year 9999.
    let started = boot_time()?.checked_add(time::Duration::seconds_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))?;
    let latest =
        at.checked_add(time::Duration::seconds(2))
            .unwrap_or(time::OffsetDateTime::new_utc(
                time::Date::MAX,
                time::Time::MIDNIGHT,
            ));
    (started <= latest).then_some(ticks)
}

/// When the system booted (`btime` in /proc/stat).
fn boot_time() -> Option<time::OffsetDateTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<i64>()
        .ok()?;
    time::OffsetDateTime::from_unix_timestamp(seconds).ok()
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .map(|t| t as f64)
        .unwrap_or(100.0)
}

/// The process's command name (`/proc/PID/comm`).
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// True while the session's monitor process is the same live sshd process.
pub fn session_alive(session: &Session) -> bool {
    // Never seen alive (its process was gone or replaced when the login was read): gone.
    let Some(recorded) = session.process_start else {
        return false;
    };
    if start_time(session.monitor_pid) != Some(recorded) {
        return false;
    }
    command_name(session.monitor_pid).is_some_and(|name| name == "sshd" || name == "sshd-session")
}

/// The pids of sshd's per-connection monitor processes of logged-in sessions (their
/// command line is `sshd: USER [priv]`, or `sshd-session: USER [priv]` from 9.8 on).
pub fn sshd_session_monitors() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| {
            let name = command_name(pid).unwrap_or_default();
            (name == "sshd" || name == "sshd-session")
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .trim_end_matches('\0')
                            .ends_with("[priv]")
                    })
                    .unwrap_or(false)
        })
        .collect()
}

/// This boot's id, as the kernel gives it (32 hex digits, dashes removed).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_else(|_| "unknown-boot".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_login_time_at_the_end_of_time_does_not_panic() {
        let end = time::OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX);
        let me = std::process::id();
        assert!(super::start_time_if_started_by(me, end).is_some());
    }

    use super::*;

    #[test]
    fn a_process_started_after_the_login_is_not_the_logins() {
        let me = std::process::id();
        let now = time::OffsetDateTime::now_utc();
        assert!(start_time_if_started_by(me, now).is_some());
        assert_eq!(
            start_time_if_started_by(me, now - time::Duration::days(365)),
            None
        );
    }

    #[test]
    fn own_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
        assert_eq!(boot_id().len(), 32);
    }
}
