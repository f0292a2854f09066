//! The command line: `args` reads it, [`main`] runs the command it names.

use std::path::PathBuf;
use std::process::ExitCode;

mod args;

pub use args::{parse, Cli, Command, Parsed, UsageError};

use crate::config::{self, Config};
use crate::daemon;
use crate::state;
use crate::timefmt;
use crate::users;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("pictor-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pictor-agent: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Command::AuthorizedKeys {
        user,
        fingerprint,
        state_dir,
    } = &cli.command
    {
        // sshd waits on this: no logging set-up, no config unless needed.
        let dir = state_dir.clone().unwrap_or_else(|| {
            config::load(&cli.config)
                .map(|c| c.state_dir)
                .unwrap_or_else(|_| PathBuf::from(config::DEFAULT_STATE_DIR))
        });
        return crate::authorized_keys::command::run(&dir, user, fingerprint.as_deref());
    }
    if let Command::ScanLog { file } = &cli.command {
        // Needs no configuration; key ids are filled in when the agent's state is readable.
        init_logging(Some("warn"));
        let keys = config::load(&cli.config)
            .ok()
            .and_then(|c| state::load_applied(&c.state_dir).ok().flatten());
        return scan_log(file, keys.map(|a| a.key_set));
    }
    let source = config::ConfigSource::choose(&cli.config, cli.config_given);
    let loaded = source.load();
    init_logging(loaded.as_ref().ok().map(|(c, _)| c.log_level.as_str()));
    // Without [[users]], the image's default login user, for every command below.
    let config = match loaded.and_then(|(config, warnings)| {
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        crate::login_user::distro_files::fill_in(config)
    }) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pictor-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::ScanLog { .. } | Command::AuthorizedKeys { .. } => ExitCode::SUCCESS,
        Command::CheckConfig => check_config(&source, &config),
        Command::Status => status(&config),
        Command::HostKeys { json } => host_keys(&config, json),
        Command::UnitPaths => {
            let users = crate::enforce::resolve_users(&config);
            if let Some(text) = crate::unit_paths::dropin(&users) {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Command::Sync => match runtime().map(|rt| rt.block_on(daemon::sync_once(config))) {
            Ok(Ok(report)) => {
                println!(
                    "synced: {} file(s) written, {} unchanged",
                    report.written, report.unchanged
                );
                ExitCode::SUCCESS
            }
            Ok(Err(e)) | Err(e) => {
                eprintln!("pictor-agent: sync failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => match runtime().map(|rt| rt.block_on(daemon::run(source, config))) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("pictor-agent: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("pictor-agent: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    limit_malloc_arenas();
    daemon::runtime().map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The daemon has a few threads that allocate a little each (an I/O thread per user, the
/// sessions thread, the blocking pool's writes): glibc would give each its own malloc
/// arena, tens to hundreds of KiB of resident memory apiece for nothing. One arena serves
/// them all; nothing here allocates hard enough from two threads at once to contend.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called before any
    // thread of ours exists, and M_ARENA_MAX takes any positive value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Logs to journald under systemd, else to stderr; `RUST_LOG` overrides the level.
fn init_logging(level: Option<&str>) {
    crate::logging::init(level.unwrap_or("info"));
}

fn check_config(source: &config::ConfigSource, config: &Config) -> ExitCode {
    let mut ok = true;
    for user in &config.users {
        if let Err(e) = users::resolve(user) {
            eprintln!("pictor-agent: {e}");
            ok = false;
        }
    }
    if let Err(e) = crate::api::token::Token::load(&config.api.token) {
        eprintln!("pictor-agent: {e}");
        ok = false;
    }
    if ok {
        println!("{}: configuration is valid", source.describe());
        if let Some(line) = login_user_line(config) {
            println!("{line}");
        }
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Says which account is managed for want of `[[users]]`, and why; `None` with them.
fn login_user_line(config: &Config) -> Option<String> {
    config.login_user.as_ref().map(|user| {
        format!(
            "login user: {} (no [[users]] configured; {})",
            crate::escape::escaped(&user.name),
            crate::escape::escaped(&user.reason.to_string())
        )
    })
}

fn status(config: &Config) -> ExitCode {
    if let Some(line) = login_user_line(config) {
        println!("{line}");
    }
    let applied = match state::load_applied(&config.state_dir) {
        Ok(Some(applied)) => applied,
        Ok(None) => {
            println!(
                "no key set applied yet (state directory {})",
                config.state_dir.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pictor-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = timefmt::now();
    let set = &applied.key_set;
    println!("version:    {}", set.version);
    println!("applied at: {}", timefmt::format(applied.applied_at));
    let files = match state::load::<state::FilesReport>(&config.state_dir, state::FILES) {
        Ok(files) => files,
        Err(e) => {
            println!("files:      {e}");
            None
        }
    };
    if let Some(report) = &files {
        println!(
            "files as of {} (the daemon's last report)",
            timefmt::format(report.written_at)
        );
    }
    let mut behind = false;
    for user_config in &config.users {
        let path = users::resolve(user_config).map(|u| crate::escape::path(&u.path()));
        println!(
            "user {} ({}):",
            user_config.name,
            path.as_deref().unwrap_or("unknown account")
        );
        let keys = set.in_force_for(&user_config.name, now);
        if keys.is_empty() {
            println!("  no keys in force");
        }
        for key in keys {
            let expiry = key
                .expires_at
                .map(|at| format!("  expires {}", timefmt::format(at)))
                .unwrap_or_default();
            println!("  {}  {}  {:?}{expiry}", key.id, key.fingerprint, key.name);
        }
        match files
            .as_ref()
            .map(|r| r.files.iter().find(|f| f.user == user_config.name))
        {
            Some(Some(file)) => {
                let stale = files
                    .as_ref()
                    .is_some_and(|r| report_predates(r.written_at, applied.applied_at));
                behind |= print_file(file, stale.then_some(applied.applied_at));
            }
            Some(None) => {
                println!("  file: not written by the agent (keys through the command only)")
            }
            None => println!("  file: no report from the daemon yet (is it running?)"),
        }
    }
    let expired: Vec<_> = set.keys.iter().filter(|k| k.is_expired(now)).collect();
    if !expired.is_empty() {
        println!("expired:");
        for key in expired {
            let at = key.expires_at.map(timefmt::format).unwrap_or_default();
            println!("  {}  {}  expired {at}", key.id, key.fingerprint);
        }
    }
    if !set.rejected.is_empty() {
        println!("rejected:");
        for rejection in &set.rejected {
            println!("  {}: {}", rejection.id, rejection.reason);
        }
    }
    let (command_file, problem) =
        crate::authorized_keys::command::inspect(&config.state_dir, &config.command_group);
    println!("AuthorizedKeysCommand file: {command_file}");
    if let Some(problem) = problem {
        println!("  problem: {problem}");
    }
    let sessions = crate::sessions::task::load_state(&config.state_dir);
    println!("active sessions: {}", sessions.open.len());
    let mut by_key: Vec<(String, &crate::sessions::Session)> = sessions
        .open
        .iter()
        .map(|s| {
            (
                s.key_id
                    .clone()
                    .unwrap_or_else(|| "(no account key)".into()),
                s,
            )
        })
        .collect();
    by_key.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, session) in by_key {
        println!(
            "  {key}: {} from {} port {} since {} ({}, session {})",
            crate::escape::escaped(&session.user),
            session.source_ip,
            session.source_port,
            timefmt::format(session.since),
            session.auth_method,
            session.session_id
        );
    }
    if behind {
        // Monitoring can act on it: a file does not hold the keys in force.
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// True when the daemon's files report was written before the key set in force was
/// applied: it speaks of the previous set and cannot vouch for this one (the daemon
/// writes a new report once the files have answered the change).
fn report_predates(written_at: time::OffsetDateTime, applied_at: time::OffsetDateTime) -> bool {
    written_at < applied_at
}

/// A file's `in sync` line: plain when the report is of the set in force, else what it
/// really says (`stale`: when the set in force was applied).
fn in_sync_line(stale: Option<time::OffsetDateTime>) -> String {
    match stale {
        None => "  file: in sync".into(),
        Some(applied_at) => format!(
            "  file: in sync as of the previous key set; not yet confirmed for the set applied at {}",
            timefmt::format(applied_at)
        ),
    }
}

/// Prints a file's state under its user; true when it is behind. A deleted key that can
/// still log in is said first and loudest. `stale`: the report predates the set in
/// force, applied then.
fn print_file(file: &crate::api::model::FileReport, stale: Option<time::OffsetDateTime>) -> bool {
    use crate::api::model::FileState;
    use crate::escape::escaped;
    if !file.keys_not_removed.is_empty() {
        println!(
            "  !!! DELETED KEYS CAN STILL LOG IN through {}: {} (retried until they are gone)",
            escaped(&file.path),
            file.keys_not_removed.join(", ")
        );
    }
    match file.state {
        FileState::InSync => {
            println!("{}", in_sync_line(stale));
            false
        }
        FileState::Behind => {
            let since = file
                .behind_since
                .map(timefmt::format)
                .unwrap_or_else(|| "just now".into());
            println!(
                "  file: BEHIND since {since}: {}",
                escaped(file.error.as_deref().unwrap_or("not verified yet"))
            );
            if !file.keys_not_added.is_empty() {
                println!("  keys not added yet: {}", file.keys_not_added.join(", "));
            }
            true
        }
    }
}

/// `host-keys`: what the status would report now.
fn host_keys(config: &Config, json: bool) -> ExitCode {
    let report = if config.host_keys.enabled {
        crate::host_keys::scan::scan(&config.host_keys.patterns())
    } else {
        crate::host_keys::HostKeysReport::default()
    };
    if json {
        match serde_json::to_string_pretty(&serde_json::json!({
            "host_keys": report.keys,
            "skipped": report.skipped,
        })) {
            Ok(text) => println!("{text}"),
            Err(_) => return ExitCode::FAILURE,
        }
    } else {
        if !config.host_keys.enabled {
            println!("host keys: not published ([host_keys] enabled = false)");
        }
        for key in &report.keys {
            println!("{} {}", key.fingerprint, key.key_type);
            println!("  {}", key.public_key);
            match &key.certificate {
                Some(certificate) => println!("  host certificate: {certificate}"),
                None => println!("  host certificate: none"),
            }
        }
        if report.keys.is_empty() && config.host_keys.enabled {
            println!(
                "host keys: none found ({})",
                crate::escape::escaped(&config.host_keys.files.join(", "))
            );
        }
        for skipped in &report.skipped {
            // Escaped when the scan wrote it; escaped again here in case it ever is not.
            println!("skipped: {}", crate::escape::escaped(skipped));
        }
    }
    if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `scan-log`: the parser's plain door.
fn scan_log(file: &std::path::Path, keys: Option<crate::keys::KeySet>) -> ExitCode {
    use crate::sessions::parse::{parse_message, parse_syslog_line};
    use crate::sessions::track::{Closing, Lookups, Seen, Tracker};
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
            Err(e) => {
                eprintln!("pictor-agent: cannot read {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let now = timefmt::now();
    // Year-less stamps are placed before the file's last write (stdin's: now).
    let written = std::fs::metadata(file).and_then(|m| m.modified());
    let reference = match written {
        Ok(at) if file.as_os_str() != "-" => time::OffsetDateTime::from(at),
        _ => now,
    };
    let stamps = crate::sessions::parse::StampContext::system(reference);
    let key_id = |user: &str, fp: &str| {
        keys.as_ref()
            .and_then(|k| {
                k.keys
                    .iter()
                    .find(|k| k.matches_fingerprint(fp) && k.is_for(user))
            })
            .map(|k| k.id.clone())
    };
    let process_start = |_| None;
    let seen = Seen {
        proof: crate::sessions::proof::Proof::LogText,
        at: crate::sessions::boot_clock::BootTicks::new(0),
    };
    let lookups = Lookups {
        key_id: &key_id,
        process_start: &process_start,
    };
    let mut tracker = Tracker::new("log", Vec::new(), Closing::LogLines);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    let mut reader = reader;
    let mut line_number = 0u64;
    let mut undated = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("pictor-agent: read error: {e}");
                return ExitCode::FAILURE;
            }
        }
        line_number += 1;
        // A byte that is not UTF-8 spoils only itself (sshd escapes what it writes).
        let text = String::from_utf8_lossy(&line);
        let Some(record) = parse_syslog_line(&text, &stamps) else {
            continue;
        };
        let Some(message) = parse_message(record.message) else {
            continue;
        };
        let events = tracker.observe(&record, message, now, seen, &lookups);
        if record.at.is_none() && !events.is_empty() {
            // Said, never silently replaced: the event carries the time of the scan.
            undated += 1;
            if undated <= 10 {
                eprintln!(
                    "pictor-agent: line {line_number}: its time stamp cannot be read; its events are dated at the time of this scan"
                );
            }
        }
        for event in events {
            if serde_json::to_writer(&mut out, &event).is_err()
                || std::io::Write::write_all(&mut out, b"\n").is_err()
            {
                return ExitCode::FAILURE;
            }
        }
    }
    if std::io::Write::flush(&mut out).is_err() {
        return ExitCode::FAILURE;
    }
    if undated > 10 {
        eprintln!(
            "pictor-agent: {undated} lines in all had a time stamp that cannot be read; their events are dated at the time of this scan"
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datetime(text: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    }

    #[test]
    fn a_files_report_older_than_the_set_in_force_does_not_vouch_for_it() {
        let applied = datetime("2026-11-25T07:00:59.271Z");
        let before = datetime("2026-11-25T07:00:58.949Z");
        let after = datetime("2026-11-25T07:00:59.300Z");
        assert!(report_predates(before, applied));
        assert!(!report_predates(after, applied));
        assert!(!report_predates(applied, applied));
        assert_eq!(in_sync_line(None), "  file: in sync");
        let stale = in_sync_line(report_predates(before, applied).then_some(applied));
        assert_eq!(
            stale,
            "  file: in sync as of the previous key set; not yet confirmed for the set applied at 2026-11-25T07:00:59.271Z"
        );
    }

    #[test]
    fn status_says_which_login_user_is_managed_and_why_only_without_users() {
        let text =
            "[api]\nbase_url = \"https://a.example\"\ninstance_id = \"i\"\ntoken_file = \"/t\"\n";
        let bare = config::parse(text).expect("valid");
        assert_eq!(login_user_line(&bare), None);
        let user = crate::login_user::LoginUser {
            name: "ec2-user".into(),
            reason: crate::login_user::Reason::CloudInit {
                path: "/etc/cloud/cloud.cfg".into(),
            },
            ignored: Vec::new(),
        };
        let config = crate::login_user::apply(bare, user);
        assert_eq!(
            login_user_line(&config).as_deref(),
            Some("login user: ec2-user (no [[users]] configured; cloud-init default_user in /etc/cloud/cloud.cfg)")
        );
    }
}
