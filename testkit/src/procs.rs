//! What `/proc` says about the processes a test started: sshd's monitors and children
//! by title, the `sleep N` processes a session started, whether a pid still runs, and
//! what a process costs (CPU ticks, `status` fields) for the benches.

/// The pid of the sshd monitor process of `user`'s connection (`sshd: USER [priv]`).
pub fn monitor_of(user: &str) -> Option<u32> {
    processes_titled(&format!("sshd: {user} [priv]"))
        .first()
        .copied()
}

/// The pid of `user`'s sshd child (`sshd: USER@notty`).
pub fn child_of(user: &str) -> Option<u32> {
    processes_titled(&format!("sshd: {user}@notty"))
        .first()
        .copied()
}

/// The pids of processes whose command line (sshd's title, for its processes) is
/// exactly `title`.
pub fn processes_titled(title: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).trim_end_matches('\0') == title)
                .unwrap_or(false)
        })
        .collect()
}

/// True while `pid` runs (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Pids of processes whose command line is exactly `sleep SECONDS`.
pub fn sleepers(seconds: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            cmdline == format!("sleep\0{seconds}\0").as_bytes() && !state.contains(") Z ")
        })
        .collect()
}

/// CPU time `pid` has used, user and system, in clock ticks (`utime` + `stime` of
/// `/proc/PID/stat`); 0 once it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// A field of `/proc/PID/status` (`VmRSS:`, `RssAnon:`), its value as written.
pub fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}
