//! What the enforcement reports, pure: the key side of the agent status, its
//! `last_error` (everything wrong now, in one line) and the service manager's STATUS
//! line, from the applied set, the managed users, the files' report and the errors.

use time::OffsetDateTime;

use crate::api::model::{FileReport, FileState, KeysReport, StatusKey};
use crate::state::Applied;

/// Everything that is wrong now, in one line; `None` when nothing is: a failed fetch,
/// each file behind (with the deleted keys that can still log in through it), and a
/// failed write of the AuthorizedKeysCommand file.
pub fn last_error(
    fetch_error: Option<&str>,
    files: &[FileReport],
    command_file_error: Option<&str>,
) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(e) = fetch_error {
        problems.push(format!("control plane: {e}"));
    }
    for file in files {
        if let (FileState::Behind, Some(e)) = (file.state, &file.error) {
            let revoked = if file.keys_not_removed.is_empty() {
                String::new()
            } else {
                format!(
                    " (deleted keys can still log in: {})",
                    file.keys_not_removed.join(", ")
                )
            };
            problems.push(format!("{} is behind{revoked}: {e}", file.path));
        }
    }
    if let Some(e) = command_file_error {
        problems.push(format!("AuthorizedKeysCommand file: {e}"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The key side of the agent status: the set in force at `now` (expired keys left out),
/// each key with the managed `users` it is written for, and each file.
pub fn keys_report(
    applied: Option<&Applied>,
    users: &[&str],
    files: Vec<FileReport>,
    last_error: Option<String>,
    now: OffsetDateTime,
) -> KeysReport {
    let Some(applied) = applied else {
        return KeysReport {
            last_error,
            files,
            ..KeysReport::default()
        };
    };
    let keys = applied
        .key_set
        .keys
        .iter()
        .filter(|k| !k.is_expired(now))
        .map(|k| StatusKey {
            id: k.id.clone(),
            fingerprint: k.fingerprint.clone(),
            users: users
                .iter()
                .filter(|u| k.is_for(u))
                .map(|u| (*u).to_owned())
                .collect(),
        })
        .collect();
    KeysReport {
        applied_version: Some(applied.key_set.version.clone()),
        applied_at: Some(crate::timefmt::format(applied.applied_at)),
        keys,
        rejected_keys: applied.key_set.rejected.clone(),
        last_error,
        files,
    }
}

/// One line for the service manager's STATUS.
pub fn status_line(
    applied: Option<&Applied>,
    users: usize,
    last_error: Option<&str>,
    now: OffsetDateTime,
) -> String {
    let mut line = match applied {
        Some(applied) => {
            let keys = applied
                .key_set
                .keys
                .iter()
                .filter(|k| !k.is_expired(now))
                .count();
            format!(
                "key set {} in force: {keys} key(s) for {users} user(s)",
                applied.key_set.version
            )
        }
        None => format!("no key set yet for {users} user(s)"),
    };
    if let Some(error) = last_error {
        line.push_str("; ");
        line.push_str(error);
    }
    line
}

#[cfg(test)]
mod tests {
    use crate::api::model::Rejection;
    use time::macros::datetime;

    use super::*;
    use crate::keys::{AccountKey, KeySet};

    const NOW: OffsetDateTime = datetime!(2026-12-07 03:00 UTC);

    fn applied() -> Applied {
        let key = |id: &str, users: Option<&[&str]>, expires_at| AccountKey {
            id: id.to_owned(),
            name: id.to_owned(),
            public_key: format!("ssh-ed25519 {id}"),
            fingerprint: format!("SHA256:{id}"),
            expires_at,
            users: users.map(|u| u.iter().map(|s| (*s).to_owned()).collect()),
        };
        Applied {
            key_set: KeySet {
                version: "v7".to_owned(),
                keys: vec![
                    key("everyone", None, None),
                    key("bob_only", Some(&["bob"]), None),
                    key("expired", None, Some(NOW - time::Duration::seconds(1))),
                ],
                rejected: vec![Rejection {
                    id: "bad".to_owned(),
                    reason: "not a key".to_owned(),
                }],
            },
            applied_at: NOW,
            etag: None,
        }
    }

    fn behind(path: &str, not_removed: &[&str]) -> FileReport {
        FileReport {
            user: "alice".to_owned(),
            path: path.to_owned(),
            state: FileState::Behind,
            error: Some("read-only file system".to_owned()),
            behind_since: Some(NOW),
            keys_not_removed: not_removed.iter().map(|s| (*s).to_owned()).collect(),
            keys_not_added: Vec::new(),
        }
    }

    #[test]
    fn every_problem_is_in_the_one_line_and_nothing_when_all_is_well() {
        assert_eq!(last_error(None, &[], None), None);
        let mut in_sync = behind("/home/bob/.ssh/authorized_keys", &[]);
        in_sync.state = FileState::InSync;
        in_sync.error = None;
        assert_eq!(last_error(None, &[in_sync.clone()], None), None);
        let files = [
            behind("/home/alice/.ssh/authorized_keys", &["key_a", "key_b"]),
            in_sync,
            behind("/srv/c/keys", &[]),
        ];
        assert_eq!(
            last_error(Some("timed out"), &files, Some("disk full")).as_deref(),
            Some(
                "control plane: timed out; /home/alice/.ssh/authorized_keys is behind \
                 (deleted keys can still log in: key_a, key_b): read-only file system; \
                 /srv/c/keys is behind: read-only file system; AuthorizedKeysCommand \
                 file: disk full"
            )
        );
    }

    #[test]
    fn the_report_lists_the_keys_in_force_with_the_users_they_are_written_for() {
        let applied = applied();
        let report = keys_report(
            Some(&applied),
            &["alice", "bob"],
            vec![behind("/f", &[])],
            Some("e".to_owned()),
            NOW,
        );
        let keys: Vec<(&str, Vec<String>)> = report
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.users.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("everyone", vec!["alice".to_owned(), "bob".to_owned()]),
                ("bob_only", vec!["bob".to_owned()]),
            ]
        );
        assert_eq!(report.applied_version.as_deref(), Some("v7"));
        assert_eq!(report.applied_at.as_deref(), Some("2026-12-07T03:00:00Z"));
        assert_eq!(report.rejected_keys.len(), 1);
        assert_eq!(report.files.len(), 1);
        assert_eq!(report.last_error.as_deref(), Some("e"));
        // Before any set: only the files and the error.
        let empty = keys_report(None, &["alice"], Vec::new(), None, NOW);
        assert_eq!(empty, KeysReport::default());
    }

    #[test]
    fn the_status_line_counts_the_keys_in_force_and_ends_with_what_is_wrong() {
        let applied = applied();
        assert_eq!(
            status_line(Some(&applied), 2, None, NOW),
            "key set v7 in force: 2 key(s) for 2 user(s)"
        );
        assert_eq!(
            status_line(None, 1, Some("control plane: refused"), NOW),
            "no key set yet for 1 user(s); control plane: refused"
        );
    }
}
