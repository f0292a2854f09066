use std::path::{Path, PathBuf};

use super::distro_files::{fill_in_at, read};
use super::*;

fn file(path: &str, text: &str) -> TextFile {
    TextFile {
        path: path.to_owned(),
        text: text.to_owned(),
    }
}

fn cfg(name: &str) -> String {
    format!("system_info:\n  default_user:\n    name: {name}\n")
}

fn os(id: &str) -> Option<TextFile> {
    Some(file(OS_RELEASE, &format!("NAME=x\nID={id}\n")))
}

fn nobody(_: &str) -> bool {
    false
}

fn everyone(_: &str) -> bool {
    true
}

fn not_found(files: &DistroFiles, exists: &dyn Fn(&str) -> bool) -> String {
    match choose(files, exists) {
        Err(e @ LoginUserError::NotFound { .. }) => e.to_string(),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn cloud_init_wins_over_os_release_and_later_files_over_earlier_ones() {
    let files = DistroFiles {
        cloud_cfg: vec![
            file(CLOUD_CFG, &cfg("debian")),
            file("/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg", &cfg("admin")),
            file(
                "/etc/cloud/cloud.cfg.d/05_logging.cfg",
                "output: {all: x}\n",
            ),
        ],
        os_release: os("debian"),
    };
    let user = choose(&files, &nobody).expect("a user");
    assert_eq!(user.name, "admin");
    assert_eq!(
        user.reason.to_string(),
        "cloud-init default_user in /etc/cloud/cloud.cfg.d/01_debian_cloud.cfg"
    );
    assert!(user.ignored.is_empty());
    assert_eq!(
        user.to_string(),
        "admin (cloud-init default_user in /etc/cloud/cloud.cfg.d/01_debian_cloud.cfg)"
    );
}

#[test]
fn cloud_init_s_user_is_taken_without_asking_whether_it_exists_yet() {
    // cloud-init creates it at first boot; the agent's unit starts after that.
    let files = DistroFiles {
        cloud_cfg: vec![file(CLOUD_CFG, &cfg("ubuntu"))],
        os_release: None,
    };
    let asked = std::cell::Cell::new(false);
    let user = choose(&files, &|_| {
        asked.set(true);
        false
    })
    .expect("a user");
    assert_eq!(user.name, "ubuntu");
    assert!(!asked.get());
}

#[test]
fn an_invalid_name_is_ignored_said_and_the_next_source_used() {
    let files = DistroFiles {
        cloud_cfg: vec![
            file(CLOUD_CFG, &cfg("cloud-user")),
            file("/etc/cloud/cloud.cfg.d/90-bad.cfg", &cfg("\"Cloud User\"")),
            file("/etc/cloud/cloud.cfg.d/95-null.cfg", &cfg("~")),
        ],
        os_release: os("rhel"),
    };
    let user = choose(&files, &nobody).expect("a user");
    assert_eq!(user.name, "cloud-user");
    assert_eq!(
        user.reason,
        Reason::CloudInit {
            path: CLOUD_CFG.into()
        }
    );
    assert_eq!(
        user.ignored,
        [
            "/etc/cloud/cloud.cfg.d/95-null.cfg: default_user name `~` is not a string, ignored",
            "/etc/cloud/cloud.cfg.d/90-bad.cfg: default_user name \"Cloud User\" is not a valid user name, ignored",
        ]
    );

    let only_bad = DistroFiles {
        cloud_cfg: vec![file(CLOUD_CFG, &cfg("root;rm"))],
        os_release: os("rocky"),
    };
    let user = choose(&only_bad, &everyone).expect("from the table");
    assert_eq!(user.name, "rocky");
    assert_eq!(user.reason.to_string(), "os-release ID=rocky");
    assert_eq!(user.ignored.len(), 1);
}

#[test]
fn a_form_the_reader_does_not_follow_is_an_error_not_a_fallback() {
    let files = DistroFiles {
        cloud_cfg: vec![
            file(CLOUD_CFG, &cfg("debian")),
            file(
                "/etc/cloud/cloud.cfg.d/50-flow.cfg",
                "system_info: {default_user: {name: admin}}\n",
            ),
        ],
        os_release: os("debian"),
    };
    let e = choose(&files, &everyone).expect_err("refused");
    assert!(matches!(e, LoginUserError::Unsupported { .. }));
    assert_eq!(
        e.to_string(),
        "/etc/cloud/cloud.cfg.d/50-flow.cfg cannot be read for cloud-init's default_user: line 1: system_info given inline (system_info: {default_user: {name: admin}}); only a block mapping is read"
    );
    // A later file that names the user settles it: the earlier one is never needed.
    let settled = DistroFiles {
        cloud_cfg: vec![files.cloud_cfg[1].clone(), file("/z.cfg", &cfg("admin"))],
        os_release: None,
    };
    assert_eq!(choose(&settled, &nobody).expect("a user").name, "admin");
}

#[test]
fn the_table_knows_the_cloud_images_and_no_derivative() {
    for (id, user) in [
        ("ubuntu", "ubuntu"),
        ("debian", "debian"),
        ("rhel", "cloud-user"),
        ("centos", "cloud-user"),
        ("rocky", "rocky"),
        ("almalinux", "almalinux"),
        ("amzn", "ec2-user"),
    ] {
        assert_eq!(by_os_id(id), Some(user), "{id}");
        let files = DistroFiles {
            cloud_cfg: Vec::new(),
            os_release: os(id),
        };
        let chosen = choose(&files, &|name| name == user).expect("a user");
        assert_eq!(chosen.name, user);
        assert_eq!(chosen.reason, Reason::OsRelease { id: id.into() });
    }
    for id in ["ol", "fedora", "linuxmint", "pop", "opensuse-leap", "arch"] {
        assert_eq!(by_os_id(id), None, "{id}");
    }
}

#[test]
fn nothing_found_names_everything_looked_at() {
    let bare = DistroFiles::default();
    assert_eq!(
        not_found(&bare, &everyone),
        "looked at /etc/cloud/cloud.cfg and /etc/cloud/cloud.cfg.d/*.cfg: none present (no cloud-init); /etc/os-release and /usr/lib/os-release: not present"
    );
    let fedora = DistroFiles {
        cloud_cfg: vec![file(CLOUD_CFG, "users:\n  - default\n")],
        os_release: os("fedora"),
    };
    assert_eq!(
        not_found(&fedora, &everyone),
        "looked at no default_user name in /etc/cloud/cloud.cfg; /etc/os-release: ID=fedora, for which no default login user is known"
    );
    let no_account = DistroFiles {
        cloud_cfg: Vec::new(),
        os_release: os("debian"),
    };
    assert!(not_found(&no_account, &nobody).ends_with(
        "/etc/os-release: ID=debian would mean debian, but there is no such local account"
    ));
    let bad_id = DistroFiles {
        cloud_cfg: Vec::new(),
        os_release: Some(file(OS_RELEASE_FALLBACK, "ID=\"Red Hat\"\n")),
    };
    assert!(not_found(&bad_id, &everyone)
        .ends_with("/usr/lib/os-release: ID=\"Red Hat\" is not a valid os-release ID"));
    let no_id = DistroFiles {
        cloud_cfg: Vec::new(),
        os_release: Some(file(OS_RELEASE, "NAME=Linux\n")),
    };
    assert!(not_found(&no_id, &everyone).ends_with("/etc/os-release: no ID"));
}

#[test]
fn the_configuration_error_tells_the_operator_what_to_do() {
    let e = crate::config::ConfigError::from(LoginUserError::NotFound {
        looked_at: vec![
            "/etc/os-release: ID=fedora, for which no default login user is known".into(),
        ],
    });
    assert_eq!(
        e.to_string(),
        "no [[users]] entry, and the image's default login user cannot be found: looked at /etc/os-release: ID=fedora, for which no default login user is known; add a [[users]] entry naming the local account whose keys are managed"
    );
}

const CONFIG: &str = "[api]\nbase_url = \"https://api.pictor.example\"\ninstance_id = \"i\"\ntoken_file = \"/etc/pictor-agent/token\"\n";

#[test]
fn apply_manages_the_login_user_with_every_default() {
    let config = crate::config::parse(CONFIG).expect("valid");
    let user = LoginUser {
        name: "rocky".into(),
        reason: Reason::OsRelease { id: "rocky".into() },
        ignored: Vec::new(),
    };
    let config = apply(config, user.clone());
    assert_eq!(
        config.users,
        [crate::config::UserConfig {
            name: "rocky".into(),
            authorized_keys: None,
            write_authorized_keys: true,
        }]
    );
    assert_eq!(config.login_user, Some(user));
}

// The distribution fixtures, read through the I/O edge: tests/fixtures/distros/NAME is
// the root of one image (see the README there).

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/distros")
        .join(name)
}

/// Accounts as each image has them when the agent starts (cloud-init's user is made at
/// first boot, before it; only the os-release table's guess is ever looked up).
/// The user and the reason chosen, or the whole error.
type Expected = Result<(&'static str, &'static str), &'static str>;

const FIXTURES: [(&str, &[&str], Expected); 10] = [
    (
        "ubuntu-20.04",
        &["root", "ubuntu"],
        Ok(("ubuntu", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        "ubuntu-22.04",
        &["root", "ubuntu"],
        Ok(("ubuntu", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        "ubuntu-24.04",
        &["root", "ubuntu"],
        Ok(("ubuntu", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        // No cloud-init on Debian's GCE images: google-guest-agent makes accounts from
        // the metadata's keys, and there is no `debian` account.
        "debian-11-gcp",
        &["root"],
        Err("looked at /etc/cloud/cloud.cfg and /etc/cloud/cloud.cfg.d/*.cfg: none present (no cloud-init); /etc/os-release: ID=debian would mean debian, but there is no such local account"),
    ),
    (
        "debian-12-aws",
        &["root", "admin"],
        Ok((
            "admin",
            "cloud-init default_user in /etc/cloud/cloud.cfg.d/01_debian_cloud.cfg",
        )),
    ),
    (
        "rhel-8",
        &["root", "cloud-user"],
        Ok(("cloud-user", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        "rocky-9",
        &["root", "rocky"],
        Ok(("rocky", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        "almalinux-9",
        &["root", "almalinux"],
        Ok(("almalinux", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        "amazon-linux-2023",
        &["root", "ec2-user"],
        Ok(("ec2-user", "cloud-init default_user in /etc/cloud/cloud.cfg")),
    ),
    (
        // Ubuntu's container image has had an `ubuntu` account since 23.04.
        "container-ubuntu-24.04",
        &["root", "ubuntu"],
        Ok(("ubuntu", "os-release ID=ubuntu")),
    ),
];

#[test]
fn every_distribution_fixture_gets_its_user_and_reason() {
    for (name, accounts, expected) in FIXTURES {
        let files = read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let exists = |user: &str| accounts.contains(&user);
        match (choose(&files, &exists), expected) {
            (Ok(user), Ok((want, reason))) => {
                assert_eq!(user.name, want, "{name}");
                assert_eq!(user.reason.to_string(), reason, "{name}");
                assert!(user.ignored.is_empty(), "{name}: {:?}", user.ignored);
            }
            (Err(e), Err(message)) => assert_eq!(e.to_string(), message, "{name}"),
            (got, _) => panic!("{name}: {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn the_edge_reads_cloud_init_s_files_in_its_order_and_names_them_by_their_real_path() {
    let files = read(&fixture("debian-12-aws")).expect("read");
    let paths: Vec<&str> = files.cloud_cfg.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/cloud/cloud.cfg",
            "/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg",
            "/etc/cloud/cloud.cfg.d/05_logging.cfg",
            "/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg",
        ],
        "README is no .cfg file"
    );
    assert_eq!(
        files.os_release.map(|f| f.path).as_deref(),
        Some(OS_RELEASE)
    );
    let container = read(&fixture("container-ubuntu-24.04")).expect("read");
    assert!(container.cloud_cfg.is_empty());
    assert_eq!(
        container.os_release.map(|f| f.path).as_deref(),
        Some(OS_RELEASE_FALLBACK)
    );
    let nothing = read(&fixture("no-such-image")).expect("absent files are no error");
    assert_eq!(nothing, DistroFiles::default());
}

#[test]
fn the_edge_follows_cloud_init_on_odd_entries_and_refuses_what_it_cannot_read() {
    let root = crate::testing::tempdir();
    let d = root.path().join("etc/cloud/cloud.cfg.d");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("10-a.cfg"), cfg("alpha")).expect("write");
    std::fs::write(d.join(".hidden.cfg"), cfg("hidden")).expect("write");
    std::fs::create_dir(d.join("20-dir.cfg")).expect("mkdir");
    std::os::unix::fs::symlink("10-a.cfg", d.join("30-link.cfg")).expect("symlink");
    std::os::unix::fs::symlink("missing", d.join("40-dangling.cfg")).expect("symlink");
    std::fs::write(d.join("50-notes.txt"), cfg("notes")).expect("write");
    let files = read(root.path()).expect("read");
    let paths: Vec<&str> = files.cloud_cfg.iter().map(|f| f.path.as_str()).collect();
    // Sorted, dot files included, directories and dangling links skipped, as cloud-init.
    assert_eq!(
        paths,
        [
            "/etc/cloud/cloud.cfg.d/.hidden.cfg",
            "/etc/cloud/cloud.cfg.d/10-a.cfg",
            "/etc/cloud/cloud.cfg.d/30-link.cfg",
        ]
    );
    assert_eq!(choose(&files, &nobody).expect("a user").name, "alpha");

    std::fs::write(d.join("60-big.cfg"), vec![b'#'; 1024 * 1024 + 1]).expect("write");
    assert!(matches!(
        read(root.path()),
        Err(LoginUserError::TooLarge { .. })
    ));
    std::fs::write(d.join("60-big.cfg"), b"\xff\xfe").expect("write");
    let e = read(root.path()).expect_err("not UTF-8");
    assert_eq!(
        e.to_string(),
        "cannot read /etc/cloud/cloud.cfg.d/60-big.cfg: not UTF-8 text"
    );
}

#[test]
fn fill_in_leaves_configured_users_alone_and_fails_with_a_config_error() {
    let configured =
        crate::config::parse(&format!("{CONFIG}[[users]]\nname = \"alice\"\n")).expect("valid");
    let kept = fill_in_at(configured.clone(), &fixture("no-such-image")).expect("untouched");
    assert_eq!(kept, configured);

    let bare = crate::config::parse(CONFIG).expect("valid");
    let e = fill_in_at(bare.clone(), &fixture("no-such-image")).expect_err("nothing to go by");
    assert!(matches!(e, crate::config::ConfigError::LoginUser(_)));
    assert!(e.to_string().contains("add a [[users]] entry"));

    let ubuntu = fill_in_at(bare, &fixture("ubuntu-24.04")).expect("from cloud-init");
    assert_eq!(ubuntu.users.len(), 1);
    assert_eq!(ubuntu.users[0].name, "ubuntu");
    assert_eq!(
        ubuntu.login_user.map(|u| u.reason.to_string()).as_deref(),
        Some("cloud-init default_user in /etc/cloud/cloud.cfg")
    );
}
