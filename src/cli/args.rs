//! The command line's grammar: the words given in, a [`Parsed`] or a [`UsageError`] out.
//! Pure: nothing here reads a file or prints.
//!
//! A small hand-made grammar over `lexopt` rather than clap: eight commands with four
//! options between them did not need clap's 170 kB of code, and an idle agent keeps
//! nearly all of its code resident (docs/performance.md).

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::config;

/// What to do, with the options that apply everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `--config PATH` (default [`config::DEFAULT_PATH`]).
    pub config: PathBuf,
    /// `--config` was given: the file is read even where `PICTOR_API_URL` is set.
    pub config_given: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The daemon.
    Run,
    /// `sync --once`: one fetch and apply, then exit.
    Sync,
    CheckConfig,
    Status,
    /// `host-keys [--json]`.
    HostKeys {
        json: bool,
    },
    UnitPaths,
    /// `scan-log FILE` (`-` for standard input).
    ScanLog {
        file: PathBuf,
    },
    /// `authorized-keys USER [FINGERPRINT] [--state-dir DIR]`, for sshd.
    AuthorizedKeys {
        user: String,
        fingerprint: Option<String>,
        state_dir: Option<PathBuf>,
    },
}

/// The outcome of reading the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Cli),
    /// `--help`: this text goes to standard output, exit 0.
    Help(&'static str),
    /// `--version`.
    Version,
}

/// A command line that means nothing; printed with the usage text to stderr, exit 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("no command given")]
    NoCommand,
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("`sync` needs `--once` (the daemon is `run`)")]
    SyncWithoutOnce,
    #[error("`{command}` needs {what}")]
    Missing {
        command: &'static str,
        what: &'static str,
    },
    #[error("unexpected argument `{argument}` for `{command}`")]
    Extra { command: String, argument: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError::Invalid(e.to_string())
    }
}

pub const USAGE: &str = "Usage: pictor-agent [--config PATH] COMMAND\n\
    Try `pictor-agent --help` for the commands.";

const HELP: &str = "\
Keeps this instance's authorized_keys in step with the Pictor account's SSH keys.

Usage: pictor-agent [--config PATH] COMMAND

Commands:
  run              Run the daemon: follow the key list and keep authorized_keys in step.
                   SIGTERM/SIGINT stop it; SIGHUP reloads the configuration.
  sync --once      Fetch the key list once, apply it, and exit (0 when it worked).
  check-config     Validate the configuration file and exit (0 when it is valid).
  status           Show what is in force: version, when applied, keys per user, rejected
                   keys, and the active SSH sessions per key.
  host-keys        Print the host keys the status reports, with their fingerprints and
                   certificates, and the files skipped with why (exit 1 when one was).
  unit-paths       Print the systemd drop-in that makes the directories of managed files
                   outside /home and /root writable under the packaged unit.
  scan-log FILE    Print the logins and sessions in an auth.log/secure file (`-`:
                   standard input) as JSON lines, with the API's field names.
  authorized-keys USER [FINGERPRINT]
                   For sshd's AuthorizedKeysCommand: print the keys in force for USER.

Options:
  --config PATH    Configuration file [default: /etc/pictor-agent/config.toml; none
                   when PICTOR_API_URL is set: see docs/containers.md]
  -h, --help       Print help (`pictor-agent COMMAND --help` for a command's)
  -V, --version    Print version

See pictor-agent(8).
";

const HELP_HOST_KEYS: &str = "\
Print the host keys the status reports ([host_keys] files), with their fingerprints and
certificates, and the files skipped with why. Exit 1 when a file was skipped.

Usage: pictor-agent host-keys [--json]

Options:
  --json           The JSON the status carries (`host_keys`), plus `skipped`.
  --config PATH    Configuration file [default: /etc/pictor-agent/config.toml]
";

const HELP_SCAN_LOG: &str = "\
Read an auth.log/secure file (or `-` for standard input) and print the logins and
sessions found in it as JSON lines, one event a line, with the API's field names.

Usage: pictor-agent scan-log FILE
";

const HELP_AUTHORIZED_KEYS: &str = "\
For sshd's AuthorizedKeysCommand: print the keys in force for USER (only the one with
FINGERPRINT, sshd's %f, when given) from the agent's state, without network. Exit 0, with
no output when there is nothing; on a missing or damaged state file, nothing printed, a
message on stderr, exit 1; never more than 2 s.

Usage: pictor-agent authorized-keys [--state-dir DIR] USER [FINGERPRINT]

Arguments:
  USER             The local user sshd asks about (%u).
  FINGERPRINT      The fingerprint of the key offered (%f), `SHA256:...`.

Options:
  --state-dir DIR  The agent's state directory (default: from --config if readable,
                   else /var/lib/pictor-agent).
";

/// The commands, by name, with their help text ([`HELP`] for those without options).
const COMMANDS: [(&str, &str); 8] = [
    ("run", HELP),
    ("sync", HELP),
    ("check-config", HELP),
    ("status", HELP),
    ("host-keys", HELP_HOST_KEYS),
    ("unit-paths", HELP),
    ("scan-log", HELP_SCAN_LOG),
    ("authorized-keys", HELP_AUTHORIZED_KEYS),
];

/// Reads the arguments after the program's name.
pub fn parse<I>(args: I) -> Result<Parsed, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let mut config_path = None;
    let mut command: Option<(&'static str, &'static str)> = None;
    let mut help = false;
    let (mut once, mut json, mut state_dir) = (false, false, None);
    let mut operands: Vec<OsString> = Vec::new();
    while let Some(arg) = parser.next()? {
        let name = command.map(|(name, _)| name);
        match arg {
            Long("config") => config_path = Some(PathBuf::from(parser.value()?)),
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") if name.is_none() => return Ok(Parsed::Version),
            Long("once") if name == Some("sync") => once = true,
            Long("json") if name == Some("host-keys") => json = true,
            Long("state-dir") if name == Some("authorized-keys") => {
                state_dir = Some(PathBuf::from(parser.value()?));
            }
            Value(word) if name.is_none() => {
                let word = word.string()?;
                command = Some(
                    COMMANDS
                        .into_iter()
                        .find(|(known, _)| *known == word)
                        .ok_or(UsageError::UnknownCommand(word))?,
                );
            }
            Value(word) => operands.push(word),
            other => {
                let argument = match other {
                    Long(long) => format!("--{long}"),
                    Short(short) => format!("-{short}"),
                    Value(word) => word.to_string_lossy().into_owned(),
                };
                return Err(UsageError::Extra {
                    command: name.unwrap_or("pictor-agent").to_owned(),
                    argument,
                });
            }
        }
    }
    let Some((name, command_help)) = command else {
        return if help {
            Ok(Parsed::Help(HELP))
        } else {
            Err(UsageError::NoCommand)
        };
    };
    if help {
        return Ok(Parsed::Help(command_help));
    }
    let mut operands = operands.into_iter();
    let command = match name {
        "run" => Command::Run,
        "sync" if !once => return Err(UsageError::SyncWithoutOnce),
        "sync" => Command::Sync,
        "check-config" => Command::CheckConfig,
        "status" => Command::Status,
        "host-keys" => Command::HostKeys { json },
        "unit-paths" => Command::UnitPaths,
        "scan-log" => Command::ScanLog {
            file: operands
                .next()
                .map(PathBuf::from)
                .ok_or(UsageError::Missing {
                    command: "scan-log",
                    what: "a FILE (`-` for standard input)",
                })?,
        },
        _ => Command::AuthorizedKeys {
            user: operands
                .next()
                .ok_or(UsageError::Missing {
                    command: "authorized-keys",
                    what: "a USER",
                })?
                .string()?,
            fingerprint: operands.next().map(|word| word.string()).transpose()?,
            state_dir,
        },
    };
    if let Some(extra) = operands.next() {
        return Err(UsageError::Extra {
            command: name.to_owned(),
            argument: extra.to_string_lossy().into_owned(),
        });
    }
    Ok(Parsed::Run(Cli {
        config_given: config_path.is_some(),
        config: config_path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH)),
        command,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Result<Cli, UsageError> {
        match parse(words.iter().copied())? {
            Parsed::Run(cli) => Ok(cli),
            other => panic!("{words:?} gave {other:?}"),
        }
    }

    fn command(words: &[&str]) -> Command {
        run(words)
            .map(|cli| cli.command)
            .expect("a valid command line")
    }

    #[test]
    fn every_command_parses_with_its_options() {
        assert_eq!(command(&["run"]), Command::Run);
        assert_eq!(command(&["sync", "--once"]), Command::Sync);
        assert_eq!(command(&["check-config"]), Command::CheckConfig);
        assert_eq!(command(&["status"]), Command::Status);
        assert_eq!(command(&["host-keys"]), Command::HostKeys { json: false });
        assert_eq!(
            command(&["host-keys", "--json"]),
            Command::HostKeys { json: true }
        );
        assert_eq!(command(&["unit-paths"]), Command::UnitPaths);
        assert_eq!(
            command(&["scan-log", "-"]),
            Command::ScanLog { file: "-".into() }
        );
        assert_eq!(
            command(&["authorized-keys", "alice"]),
            Command::AuthorizedKeys {
                user: "alice".into(),
                fingerprint: None,
                state_dir: None
            }
        );
    }

    #[test]
    fn the_shipped_authorized_keys_command_line_parses() {
        // packaging/sshd_config.d: `authorized-keys --state-dir DIR %u %f`.
        assert_eq!(
            command(&[
                "authorized-keys",
                "--state-dir",
                "/var/lib/pictor-agent",
                "root",
                "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
            ]),
            Command::AuthorizedKeys {
                user: "root".into(),
                fingerprint: Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into()),
                state_dir: Some("/var/lib/pictor-agent".into()),
            }
        );
    }

    #[test]
    fn config_is_global_and_takes_either_spelling() {
        let default = run(&["status"]).unwrap();
        assert_eq!(default.config, PathBuf::from(config::DEFAULT_PATH));
        assert!(!default.config_given);
        for words in [
            &["--config", "/tmp/c.toml", "status"][..],
            &["status", "--config", "/tmp/c.toml"],
            &["--config=/tmp/c.toml", "status"],
        ] {
            assert_eq!(run(words).unwrap().config, PathBuf::from("/tmp/c.toml"));
            assert!(run(words).unwrap().config_given);
        }
    }

    #[test]
    fn help_and_version_are_answers_not_errors() {
        assert_eq!(parse(["--help"]), Ok(Parsed::Help(HELP)));
        assert_eq!(parse(["-h"]), Ok(Parsed::Help(HELP)));
        assert_eq!(
            parse(["scan-log", "--help"]),
            Ok(Parsed::Help(HELP_SCAN_LOG))
        );
        // Help wins over what would otherwise be an error.
        assert_eq!(parse(["sync", "--help"]), Ok(Parsed::Help(HELP)));
        assert_eq!(parse(["--version"]), Ok(Parsed::Version));
        assert_eq!(parse(["-V"]), Ok(Parsed::Version));
    }

    #[test]
    fn meaningless_command_lines_are_usage_errors() {
        let none: [&str; 0] = [];
        assert_eq!(parse(none), Err(UsageError::NoCommand));
        assert_eq!(
            parse(["frobnicate"]),
            Err(UsageError::UnknownCommand("frobnicate".into()))
        );
        assert_eq!(parse(["sync"]), Err(UsageError::SyncWithoutOnce));
        assert!(matches!(
            parse(["scan-log"]),
            Err(UsageError::Missing { .. })
        ));
        assert!(matches!(
            parse(["authorized-keys"]),
            Err(UsageError::Missing { .. })
        ));
        // An option of another command, an extra operand, a missing value.
        assert!(matches!(
            parse(["run", "--json"]),
            Err(UsageError::Extra { .. })
        ));
        assert!(matches!(
            parse(["status", "now"]),
            Err(UsageError::Extra { .. })
        ));
        assert!(matches!(
            parse(["authorized-keys", "a", "SHA256:x", "more"]),
            Err(UsageError::Extra { .. })
        ));
        assert!(matches!(
            parse(["status", "--config"]),
            Err(UsageError::Invalid(_))
        ));
        assert!(matches!(
            parse(["run", "--version"]),
            Err(UsageError::Extra { .. })
        ));
    }

    #[test]
    fn operands_after_double_dash_are_taken_as_written() {
        assert_eq!(
            command(&["scan-log", "--", "--weird-name"]),
            Command::ScanLog {
                file: "--weird-name".into()
            }
        );
    }

    #[test]
    fn a_user_name_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let words = vec![
            OsString::from("authorized-keys"),
            OsString::from_vec(vec![0x61, 0xff]),
        ];
        assert!(matches!(parse(words), Err(UsageError::Invalid(_))));
    }
}
