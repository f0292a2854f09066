//! SELinux labels of the files sshd reads: `~/.ssh` and the managed `authorized_keys`.
//!
//! On a host with SELinux enabled (the RHEL family), sshd (`sshd_t`) may read a user's
//! keys only from a file labelled `ssh_home_t`: a file created by a daemon under `~/.ssh`
//! inherits the label of the place it is created in (`user_home_t` for a new `~/.ssh`),
//! and its owner is locked out. So, with SELinux enabled:
//!
//! - a file the agent **replaces** keeps the label of the file it replaces (an
//!   administrator's choice survives; what `restorecon` would do is theirs to run);
//! - a file or `~/.ssh` the agent **creates** gets the label the loaded policy's file
//!   contexts give its path and type, as `restorecon` would set it;
//! - a replaced file without a label is treated as created.
//!
//! A label that cannot be set is logged and the write goes on: the new file keeps the
//! label the kernel gave it (its directory's), and no deleted key is ever kept in the
//! old one for want of a label.
//!
//! Without SELinux, no label is read or set: nothing changes on those hosts (and the
//! packaged service could not set `security.*` attributes there anyway: that needs
//! CAP_SYS_ADMIN when no security module owns the name).
//!
//! The policy lookup is libselinux's own `selabel_lookup`, loaded with `dlopen` only when
//! SELinux is enabled: the agent does not link libselinux (hosts without it run it as
//! before), needs no bindings generated at build time, and does not re-implement file
//! context matching (regular expressions, compiled `.bin` files, home directory
//! templates, local customisations).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing::{error, info};

/// The extended attribute that holds a file's SELinux label.
pub const XATTR: &str = "security.selinux";
/// Longest label read back (the kernel's page-sized limit).
const MAX_LABEL: usize = 4096;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot load libselinux.so.1: {0}")]
    Library(String),
    #[error("libselinux cannot open the file contexts{0}")]
    Contexts(String),
}

/// How the agent labels the files sshd reads on this host.
pub enum Labels {
    /// No SELinux: labels are neither read nor set.
    Off,
    /// SELinux is enabled: labels follow the file contexts of the policy.
    Policy(Policy),
}

impl Labels {
    /// This host's labelling, worked out once: [`Labels::Policy`] with the loaded policy
    /// when SELinux is enabled, [`Labels::Off`] otherwise. Enabled but unusable (no
    /// libselinux, no file contexts) is logged as an error and behaves as off: files
    /// still get written, with the label the kernel gives them.
    pub fn system() -> &'static Labels {
        static SYSTEM: OnceLock<Labels> = OnceLock::new();
        SYSTEM.get_or_init(|| {
            // selinuxfs is mounted exactly where SELinux is enabled.
            if !Path::new("/sys/fs/selinux/enforce").exists() {
                return Labels::Off;
            }
            match Policy::open(None) {
                Ok(Some(policy)) => {
                    info!("SELinux is enabled: files sshd reads get the labels of the policy's file contexts");
                    Labels::Policy(policy)
                }
                Ok(None) => Labels::Off,
                Err(e) => {
                    error!("SELinux is enabled but its file contexts cannot be used ({e}): files the agent creates keep the label the kernel gives them, which sshd may not be allowed to read");
                    Labels::Off
                }
            }
        })
    }

    /// Labels from a `file_contexts` file instead of the loaded policy's, as if SELinux
    /// were enabled: for checking a policy's contexts, and for tests on hosts without
    /// SELinux (root can set `security.selinux` on ext4 and tmpfs there).
    pub fn with_file_contexts(path: &Path) -> Result<Labels, LabelError> {
        Ok(Labels::Policy(
            Policy::open(Some(path))?.ok_or_else(|| LabelError::Contexts(String::new()))?,
        ))
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Labels::Policy(_))
    }

    /// The label of an open file, when SELinux is on and the file has one.
    pub fn read(&self, fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
        match self {
            Labels::Off => None,
            Labels::Policy(_) => label_of(fd),
        }
    }

    /// The label a new file or directory at `path` gets (`mode` carries its type,
    /// `S_IFREG` or `S_IFDIR`): `None` when SELinux is off or the policy has no context
    /// for the path.
    pub fn for_new(&self, path: &Path, mode: u32) -> Option<Vec<u8>> {
        match self {
            Labels::Off => None,
            Labels::Policy(policy) => policy.lookup(path, mode),
        }
    }

    /// The label the file replacing one labelled `old` gets: `old` itself, or as for a
    /// new file when it had none.
    pub fn for_replacement(&self, old: Option<Vec<u8>>, path: &Path, mode: u32) -> Option<Vec<u8>> {
        match self {
            Labels::Off => None,
            Labels::Policy(_) => old.or_else(|| self.for_new(path, mode)),
        }
    }
}

/// A file's `security.selinux` attribute, exactly as stored (usually NUL-terminated).
pub fn label_of(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(fd, XATTR, &mut buffer[..]) {
            Ok(len) => {
                buffer.truncate(len);
                return Some(buffer);
            }
            Err(rustix::io::Errno::RANGE) if buffer.len() < MAX_LABEL => {
                buffer.resize(MAX_LABEL, 0);
            }
            Err(_) => return None,
        }
    }
}

/// Sets a file's `security.selinux` attribute through its descriptor.
pub fn set_label(fd: BorrowedFd<'_>, label: &[u8]) -> std::io::Result<()> {
    rustix::fs::fsetxattr(fd, XATTR, label, rustix::fs::XattrFlags::empty())
        .map_err(std::io::Error::from)
}

/// `struct selinux_opt` of `<selinux/label.h>`.
#[repr(C)]
struct SelinuxOpt {
    kind: c_int,
    value: *const c_char,
}

/// `SELABEL_CTX_FILE`: the file contexts backend.
const SELABEL_CTX_FILE: c_uint = 0;
/// `SELABEL_OPT_PATH`: a file contexts file other than the policy's.
const SELABEL_OPT_PATH: c_int = 3;

type SelabelOpen = unsafe extern "C" fn(c_uint, *const SelinuxOpt, c_uint) -> *mut c_void;
type SelabelLookup =
    unsafe extern "C" fn(*mut c_void, *mut *mut c_char, *const c_char, c_int) -> c_int;
type SelabelClose = unsafe extern "C" fn(*mut c_void);
type Freecon = unsafe extern "C" fn(*mut c_char);
type IsSelinuxEnabled = unsafe extern "C" fn() -> c_int;

/// libselinux's file contexts, opened once.
pub struct Policy {
    /// The `selabel_handle`; libselinux does not promise that one handle may be used
    /// from several threads at once, so lookups take turns.
    handle: Mutex<Handle>,
    lookup: SelabelLookup,
    freecon: Freecon,
}

struct Handle {
    raw: *mut c_void,
    close: SelabelClose,
}

// The handle is only used under the mutex; libselinux keeps no thread-local state in it.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from selabel_open and is closed once.
        unsafe { (self.close)(self.raw) }
    }
}

impl Policy {
    /// Opens the file contexts: those of `path`, or, with `None`, the loaded policy's,
    /// which needs SELinux enabled (`Ok(None)` when libselinux says it is not).
    fn open(path: Option<&Path>) -> Result<Option<Policy>, LabelError> {
        // SAFETY: dlopen with a constant NUL-terminated name; the library stays loaded
        // for the life of the process (it is never closed), so the symbols stay valid.
        let library = unsafe {
            libc::dlopen(
                c"libselinux.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            )
        };
        if library.is_null() {
            return Err(LabelError::Library(dl_error()));
        }
        // SAFETY: each symbol is looked up by its documented name and given its C
        // signature from <selinux/selinux.h> and <selinux/label.h>.
        let (open, lookup, close, freecon, enabled) = unsafe {
            (
                symbol::<SelabelOpen>(library, c"selabel_open")?,
                symbol::<SelabelLookup>(library, c"selabel_lookup")?,
                symbol::<SelabelClose>(library, c"selabel_close")?,
                symbol::<Freecon>(library, c"freecon")?,
                symbol::<IsSelinuxEnabled>(library, c"is_selinux_enabled")?,
            )
        };
        let path = match path {
            Some(path) => Some(
                CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| LabelError::Contexts(": the path holds a NUL byte".into()))?,
            ),
            None => {
                // SAFETY: no arguments.
                if unsafe { enabled() } <= 0 {
                    return Ok(None);
                }
                None
            }
        };
        let options: Vec<SelinuxOpt> = path
            .iter()
            .map(|path| SelinuxOpt {
                kind: SELABEL_OPT_PATH,
                value: path.as_ptr(),
            })
            .collect();
        // SAFETY: `options` (and the string it points to) live across the call; the
        // count is its length.
        let raw = unsafe { open(SELABEL_CTX_FILE, options.as_ptr(), options.len() as c_uint) };
        if raw.is_null() {
            return Err(LabelError::Contexts(format!(
                " ({})",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Some(Policy {
            handle: Mutex::new(Handle { raw, close }),
            lookup,
            freecon,
        }))
    }

    /// The context for `path` of type `mode`, NUL-terminated as the kernel stores it.
    fn lookup(&self, path: &Path, mode: u32) -> Option<Vec<u8>> {
        let key = CString::new(path.as_os_str().as_bytes()).ok()?;
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut context: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live handle, an out pointer, a NUL-terminated key; on success
        // libselinux returns a string we own and release with freecon.
        let found = unsafe { (self.lookup)(handle.raw, &mut context, key.as_ptr(), mode as c_int) };
        if found != 0 || context.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string from libselinux, copied before it is freed.
        let label = unsafe { CStr::from_ptr(context) }
            .to_bytes_with_nul()
            .to_vec();
        // SAFETY: freed once, as libselinux requires.
        unsafe { (self.freecon)(context) };
        Some(label)
    }
}

/// Looks up `name` in `library` as a function of type `F`.
///
/// # Safety
/// `F` must be the symbol's true function pointer type.
unsafe fn symbol<F: Copy>(library: *mut c_void, name: &CStr) -> Result<F, LabelError> {
    // SAFETY: a handle from dlopen and a NUL-terminated name.
    let address = unsafe { libc::dlsym(library, name.as_ptr()) };
    if address.is_null() {
        return Err(LabelError::Library(format!(
            "{} is missing ({})",
            name.to_string_lossy(),
            dl_error()
        )));
    }
    // SAFETY: the caller vouches for the type; a function pointer has the size of a
    // data pointer on the platforms the agent runs on.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next call.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libselinux itself, opened with dlopen from whatever binary these tests are built
    /// into. The aarch64 run (scripts/aarch64-tests.sh: zig-linked, as the portable
    /// binaries are) proves the run-time loading works in that build too. Reads a
    /// checked-in file_contexts: no SELinux kernel is needed.
    #[test]
    fn libselinux_is_loaded_at_run_time_and_answers_from_file_contexts() {
        let contexts =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/selinux/file_contexts");
        let labels = match Labels::with_file_contexts(&contexts) {
            Ok(labels) => labels,
            Err(LabelError::Library(e)) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: no libselinux.so.1 here ({e})");
                return;
            }
            Err(e) => panic!("libselinux: {e}"),
        };
        let label = |path: &str, mode| {
            labels.for_new(Path::new(path), mode).map(|l| {
                String::from_utf8_lossy(&l)
                    .trim_end_matches('\0')
                    .to_owned()
            })
        };
        assert_eq!(
            label("/home/alice/.ssh/authorized_keys", libc::S_IFREG).as_deref(),
            Some("unconfined_u:object_r:ssh_home_t:s0")
        );
        assert_eq!(
            label("/home/alice/.ssh", libc::S_IFDIR).as_deref(),
            Some("unconfined_u:object_r:ssh_home_t:s0")
        );
        assert_eq!(
            label("/home/alice", libc::S_IFDIR).as_deref(),
            Some("unconfined_u:object_r:user_home_dir_t:s0")
        );
        assert_eq!(label("/etc/passwd", libc::S_IFREG), None);
    }

    #[test]
    fn without_selinux_nothing_is_read_or_given() {
        let labels = Labels::Off;
        let old = Some(b"system_u:object_r:ssh_home_t:s0\0".to_vec());
        assert_eq!(
            labels.for_new(Path::new("/home/a/.ssh"), libc::S_IFDIR),
            None
        );
        assert_eq!(
            labels.for_replacement(
                old,
                Path::new("/home/a/.ssh/authorized_keys"),
                libc::S_IFREG
            ),
            None
        );
        assert!(!labels.is_on());
    }
}
