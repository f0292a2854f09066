//! What a reload (SIGHUP) changes: the parts of the configuration that are applied live,
//! and the ones that need a restart (pure).

use crate::config::Config;

/// The differences between the running configuration and a reloaded one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `[api]`: the fetch task and the senders start again with the new client.
    pub api: bool,
    /// `[sessions]`: the sessions task (and delivery) starts again.
    pub sessions: bool,
    /// `[log] level`.
    pub log_level: bool,
    /// `[host_keys]`: the host key files are followed afresh.
    pub host_keys: bool,
    /// `[[users]]` (or, without them, the image's default login user, chosen again) or
    /// `[state] authorized_keys_command_group`: enforced at once.
    pub users: bool,
    /// Options read only at start, named as in the file: logged, not applied.
    pub need_restart: Vec<&'static str>,
}

/// Compares `old` and `new`.
pub fn changes(old: &Config, new: &Config) -> Changes {
    let mut need_restart = Vec::new();
    if old.state_dir != new.state_dir {
        need_restart.push("[state] dir");
    }
    Changes {
        api: old.api != new.api,
        sessions: old.sessions != new.sessions,
        log_level: old.log_level != new.log_level,
        host_keys: old.host_keys != new.host_keys,
        users: old.users != new.users || old.command_group != new.command_group,
        need_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[api]\nbase_url = \"http://127.0.0.1:1\"\ninstance_id = \"i\"\n\
             token_file = \"/dev/null\"\n{extra}\n[[users]]\nname = \"ubuntu\"\n"
        );
        crate::config::parse(&text).expect("valid")
    }

    #[test]
    fn the_same_file_changes_nothing() {
        assert_eq!(changes(&config(""), &config("")), Changes::default());
    }

    #[test]
    fn each_section_is_told_apart_and_the_state_directory_needs_a_restart() {
        let old = config("");
        let new = config(
            "[sessions]\nterminate_on_revoke = false\n[log]\nlevel = \"debug\"\n\
             [state]\ndir = \"/tmp/elsewhere\"\n",
        );
        let found = changes(&old, &new);
        assert!(found.sessions && found.log_level);
        assert!(!found.api && !found.users && !found.host_keys);
        let hosts = changes(&old, &config("[host_keys]\nenabled = false\n"));
        assert!(hosts.host_keys && !hosts.api);
        assert_eq!(found.need_restart, ["[state] dir"]);
    }

    #[test]
    fn a_login_user_chosen_again_differently_is_a_change_of_users() {
        let bare = crate::config::parse(
            "[api]\nbase_url = \"http://127.0.0.1:1\"\ninstance_id = \"i\"\ntoken_file = \"/dev/null\"\n",
        )
        .expect("valid");
        let login = |name: &str, path: &str| {
            crate::login_user::apply(
                bare.clone(),
                crate::login_user::LoginUser {
                    name: name.into(),
                    reason: crate::login_user::Reason::CloudInit { path: path.into() },
                    ignored: Vec::new(),
                },
            )
        };
        let debian = login("debian", "/etc/cloud/cloud.cfg");
        let admin = login("admin", "/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg");
        assert!(changes(&debian, &admin).users);
        // The same account for another reason: nothing to enforce anew.
        let same = login("debian", "/etc/cloud/cloud.cfg.d/90-x.cfg");
        assert_eq!(changes(&debian, &same), Changes::default());
        // [[users]] added by hand in place of the login user.
        assert!(changes(&debian, &config("")).users);
    }
}
