//! The cgroup v2 the `sock_ops` program attaches to: the one `--cgroup PATH` names, else
//! the root of the cgroup v2 hierarchy (every socket of every process, in every network
//! namespace: a socket belongs to the cgroup of the process that made it, and a program
//! attached to a cgroup runs for its descendants too).
//!
//! When no cgroup2 is mounted the probe mounts one for a moment (root may): on a private
//! directory, opens it and detaches the mount again at once, so the machine's mounts are
//! left as they were; the open descriptor keeps the cgroup for the attach. Without the
//! right to mount, the error says the command to run.

use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC` (statfs `f_type` of a cgroup2 mount).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// An opened cgroup v2 directory, ready for an attach.
pub(crate) struct Cgroup {
    /// The directory's descriptor.
    pub file: File,
    /// Where it is, for messages ("root cgroup v2 at /sys/fs/cgroup").
    pub describe: String,
}

/// Opens `path`, or the root cgroup v2 when `None`; the error says what to do.
pub(crate) fn open(path: Option<&Path>) -> Result<Cgroup, String> {
    match path {
        Some(p) => {
            let file = open_dir(p)?;
            if !is_cgroup2(p) {
                return Err(format!(
                    "--cgroup {}: not a cgroup v2 directory (statfs type is not cgroup2): give a \
                     directory under a cgroup2 mount, e.g. the root at {}",
                    p.display(),
                    root_mount()
                        .map(|r| r.display().to_string())
                        .unwrap_or_else(|| "/sys/fs/cgroup".into())
                ));
            }
            Ok(Cgroup {
                file,
                describe: format!("cgroup v2 {}", p.display()),
            })
        }
        None => match root_mount() {
            Some(root) => Ok(Cgroup {
                file: open_dir(&root)?,
                describe: format!("root cgroup v2 at {}", root.display()),
            }),
            None => mount_private().map_err(|e| {
                format!(
                    "no cgroup2 is mounted and mounting one failed ({e}): run `{}` (or give \
                     `--cgroup PATH`)",
                    mount_command()
                )
            }),
        },
    }
}

fn open_dir(p: &Path) -> Result<File, String> {
    File::open(p).map_err(|e| {
        format!(
            "cannot open the cgroup directory {}: {e}: give an existing cgroup v2 directory \
             with --cgroup",
            p.display()
        )
    })
}

/// Whether `p` is on a cgroup2 file system.
fn is_cgroup2(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by statfs when it succeeded.
    let st = unsafe { st.assume_init() };
    // `f_type`'s width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let f_type = st.f_type as i64;
    rc == 0 && f_type == CGROUP2_SUPER_MAGIC
}

/// Where the root of the cgroup v2 hierarchy is mounted, if it is.
pub(crate) fn root_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    root_in_mountinfo(&text)
}

/// The mount point of the first cgroup2 mount of the hierarchy's root in a
/// `/proc/self/mountinfo` text (fields: id parent major:minor root mount-point options
/// [optional fields] - fstype source super-options).
fn root_in_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let point = f.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The command that mounts cgroup2 where systems usually have it: `/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` when that holds the cgroup v1 hierarchies (a tmpfs).
pub(crate) fn mount_command() -> &'static str {
    if Path::new("/sys/fs/cgroup/cpu").exists() || Path::new("/sys/fs/cgroup/memory").exists() {
        "mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified"
    } else {
        "mount -t cgroup2 none /sys/fs/cgroup"
    }
}

/// Mounts cgroup2 on a new private directory, opens its root, detaches the mount and
/// removes the directory: the descriptor stays valid (the cgroup is the hierarchy's, not
/// the mount's).
pub(crate) fn mount_private() -> Result<Cgroup, String> {
    let dir = std::env::temp_dir().join(format!("blaster-cgroup2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call; no data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            c"cgroup2".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_dir(&dir);
        return Err(format!("mount -t cgroup2 none {}: {e}", dir.display()));
    }
    let file = File::open(&dir);
    // SAFETY: a NUL-terminated path; MNT_DETACH only unhooks the mount we just made.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_dir(&dir);
    let file = file.map_err(|e| format!("open {}: {e}", dir.display()))?;
    Ok(Cgroup {
        file,
        describe: "root cgroup v2 (mounted by the probe for the attach, then unmounted)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_cgroup_root_from_mountinfo() {
        let hybrid = "25 19 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      29 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n\
                      30 25 0:26 /sub /mnt/sub rw - cgroup2 cgroup2 rw\n\
                      31 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            root_in_mountinfo(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified")),
            "the root of the hierarchy, not a bind mount of a child"
        );
        assert_eq!(
            root_in_mountinfo("31 25 0:26 / /a\\040b rw - cgroup2 none rw\n"),
            Some(PathBuf::from("/a b"))
        );
        assert_eq!(
            root_in_mountinfo("25 19 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
    }

    #[test]
    fn probe_cgroup_flag_errors_name_the_path() {
        let dir = std::env::temp_dir();
        let err = open(Some(&dir)).err().expect("a temp dir is no cgroup");
        assert!(
            err.contains(&format!("--cgroup {}", dir.display())),
            "{err}"
        );
        assert!(err.contains("not a cgroup v2 directory"), "{err}");
        let err = open(Some(Path::new("/nonexistent/blaster-cgroup")))
            .err()
            .expect("missing");
        assert!(err.contains("/nonexistent/blaster-cgroup"), "{err}");
        if let Some(root) = root_mount() {
            assert!(is_cgroup2(&root), "{}", root.display());
        }
    }

    /// Needs root: the fallback mount works even when cgroup2 is already mounted (a second
    /// mount of the same hierarchy), and leaves no mount behind.
    #[test]
    fn probe_cgroup_private_mount_opens_a_cgroup2_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting cgroup2 needs root");
            return;
        }
        let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let cg = match mount_private() {
            Ok(cg) => cg,
            Err(e) if std::env::var_os("BLASTER_PROBE_REQUIRE").is_some() => {
                panic!("mounting cgroup2 must work here: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot mount cgroup2 here: {e}");
                return;
            }
        };
        let fd_path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&cg.file)
        );
        assert!(
            Path::new(&fd_path).join("cgroup.procs").exists(),
            "{fd_path} is a cgroup v2 directory"
        );
        let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !after.contains("blaster-cgroup2-"),
            "the mount was detached"
        );
        assert_eq!(before.lines().count(), after.lines().count());
    }
}
