//! What a reload (SIGHUP) changes: the parts of the configuration that are applied live,
//! and the ones that need a restart (pure).

use crate::config::Config;

/// The differences between the running configuration and a reloaded one. The managed
/// users are not among them: every reload resolves them again (the account database,
/// or the image's default login user, may have changed when the file did not).
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
        assert!(!found.api && !found.host_keys);
        let hosts = changes(&old, &config("[host_keys]\nenabled = false\n"));
        assert!(hosts.host_keys && !hosts.api);
        assert_eq!(found.need_restart, ["[state] dir"]);
    }
}
