//! The job's root: the mount sequence init runs in its new mount namespace (steps 10–16 of
//! `docs/sandbox.md`), written against [`RootKernel`] so that unit tests can check the exact
//! sequence of kernel calls — flags, overlay options, pivot_root — without root.
//!
//! [`SysKernel`] is the one real implementation; it forwards to `sys` and `std::fs` and holds no
//! logic of its own (and no `unsafe`: that stays in `sys.rs`).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, symlink};

use overlay_options::OverlayOptions;

use super::{ctx, mark};
use crate::spec::SandboxSpec;
use crate::sys;

/// The kernel calls [`build_root`] makes, one method per call (youki's `Syscall` style).
/// Paths are host paths until [`RootKernel::pivot_root_dot`], then the job's.
pub(crate) trait RootKernel {
    /// `mount(2)`.
    fn mount(
        &self,
        src: &str,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `umount2(2)`.
    fn umount(&self, target: &str, flags: libc::c_int) -> io::Result<()>;
    /// `pivot_root(".", ".")`.
    fn pivot_root_dot(&self) -> io::Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &str) -> io::Result<()>;
    /// `lstat(2)`: whether `path` is a directory (not a symlink to one).
    fn is_real_dir(&self, path: &str) -> io::Result<bool>;
    /// `mkdir(2)` (the mode is masked by the umask).
    fn mkdir(&self, path: &str, mode: u32) -> io::Result<()>;
    /// `mknod(2)` of a character device.
    fn mknod_char(&self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()>;
    /// `chmod(2)`.
    fn chmod(&self, path: &str, mode: u32) -> io::Result<()>;
    /// `symlink(2)`: a link at `path` that points to `to`.
    fn symlink(&self, to: &str, path: &str) -> io::Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> io::Result<()>;
}

/// The real kernel.
pub(crate) struct SysKernel;

impl RootKernel for SysKernel {
    fn mount(
        &self,
        src: &str,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        sys::mount(src, target, fstype, flags, data)
    }
    fn umount(&self, target: &str, flags: libc::c_int) -> io::Result<()> {
        sys::umount(target, flags)
    }
    fn pivot_root_dot(&self) -> io::Result<()> {
        sys::pivot_root_dot()
    }
    fn chdir(&self, path: &str) -> io::Result<()> {
        std::env::set_current_dir(path)
    }
    fn is_real_dir(&self, path: &str) -> io::Result<bool> {
        fs::symlink_metadata(path).map(|m| m.is_dir())
    }
    fn mkdir(&self, path: &str, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(path)
    }
    fn mknod_char(&self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        sys::mknod_char(path, mode, major, minor)
    }
    fn chmod(&self, path: &str, mode: u32) -> io::Result<()> {
        sys::chmod(path, mode)
    }
    fn symlink(&self, to: &str, path: &str) -> io::Result<()> {
        symlink(to, path)
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        sys::sethostname(name)
    }
}

/// What in the job's /proc is bound read-only over itself (a non-root job cannot write to them
/// anyway: defence in depth, as container runtimes do).
const PROC_READ_ONLY: [&str; 2] = ["sys", "sysrq-trigger"];

/// Mounts the job's root and pivots into it. Runs as root inside the new mount namespace.
pub(crate) fn build_root(k: &dyn RootKernel, spec: &SandboxSpec) -> Result<(), String> {
    // 1. Nothing we mount may propagate back to the host (and host mounts stop propagating in).
    ctx(
        "make / private",
        k.mount("none", "/", None, libc::MS_REC | libc::MS_PRIVATE, None),
    )?;
    let root = format!("{}/root", spec.job_dir);
    mount_overlay(k, spec, &root)?;
    mark(spec, "overlay");
    // 3. A fresh /proc: the new PID namespace's processes only, and of those the job's own
    //    (hidepid=2: init, which runs as root, is invisible); its tunables read-only.
    ctx(
        "mount /proc",
        k.mount(
            "proc",
            &format!("{root}/proc"),
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("hidepid=2"),
        ),
    )?;
    for p in PROC_READ_ONLY {
        let path = format!("{root}/proc/{p}");
        match k.is_real_dir(&path) {
            // Not in this kernel (sysrq-trigger needs CONFIG_MAGIC_SYSRQ).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("/proc/{p}: {e}")),
            Ok(_) => {}
        }
        ctx(
            &format!("bind /proc/{p}"),
            k.mount(&path, &path, None, libc::MS_BIND | libc::MS_REC, None),
        )?;
        ctx(
            &format!("remount /proc/{p} read-only"),
            k.mount(
                "none",
                &path,
                None,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                None,
            ),
        )?;
    }
    mark(spec, "proc");
    let dev = format!("{root}/dev");
    mount_dev(k, &dev)?;
    mark(spec, "dev");
    // 5. Private /dev/shm and /tmp, size-limited (their pages are charged to the job's cgroup).
    let tmp_opts = format!(
        "mode=1777,size={},nr_inodes={}",
        spec.tmp_bytes.max(4096),
        spec.tmp_inodes.max(16)
    );
    for (what, p) in [
        ("/dev/shm", format!("{dev}/shm")),
        ("/tmp", format!("{root}/tmp")),
    ] {
        ctx(
            &format!("mount {what}"),
            k.mount(
                "tmpfs",
                &p,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&tmp_opts),
            ),
        )?;
    }
    mark(spec, "shm+tmp");
    // 6. pivot_root into the overlay and detach the old root (the host's whole mount tree).
    ctx("chdir root", k.chdir(&root))?;
    ctx("pivot_root", k.pivot_root_dot())?;
    ctx("detach old root", k.umount(".", libc::MNT_DETACH))?;
    ctx("chdir /", k.chdir("/"))?;
    mark(spec, "pivot+detach");
    // 7. UTS namespace: our own hostname.
    ctx("sethostname", k.sethostname(&spec.hostname))?;
    Ok(())
}

/// Step 2, the overlay root at `root`: read-only layers under the job's writable upper dir (on its
/// tmpfs), and real directories to mount /proc, /dev and /tmp on.
fn mount_overlay(k: &dyn RootKernel, spec: &SandboxSpec, root: &str) -> Result<(), String> {
    // Paths are escaped (`\`, `:`, `,`), so any absolute layer path can be used.
    let opts = OverlayOptions::new(&spec.layers)
        .upper(
            format!("{}/upper", spec.job_dir),
            format!("{}/work", spec.job_dir),
        )
        .option("index=off")
        .option("metacopy=off")
        .option("redirect_dir=off")
        .build()
        .map_err(|e| e.to_string())?;
    ctx(
        &format!("mount overlay ({opts})"),
        k.mount(
            "overlay",
            root,
            Some("overlay"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&opts),
        ),
    )?;
    // Mount points must be real directories: a mount target follows symlinks, and we are
    // still root with the host's tree reachable. (The merged root directory belongs to root,
    // so a job cannot replace these, but a carelessly built layer could ship a symlink.)
    for d in ["proc", "dev", "tmp"] {
        let p = format!("{root}/{d}");
        match k.is_real_dir(&p) {
            Ok(true) => {}
            Ok(false) => return Err(format!("/{d} in the layers is not a directory")),
            Err(_) => ctx(&format!("mkdir {p}"), k.mkdir(&p, 0o755))?,
        }
    }
    Ok(())
}

/// Step 4, a minimal /dev on its own tmpfs at `dev`, made read-only once populated.
fn mount_dev(k: &dyn RootKernel, dev: &str) -> Result<(), String> {
    ctx(
        "mount /dev",
        k.mount(
            "tmpfs",
            dev,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("mode=755,size=64k,nr_inodes=64"),
        ),
    )?;
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        let p = format!("{dev}/{name}");
        ctx(&format!("mknod {p}"), k.mknod_char(&p, 0o666, 1, minor))?;
        ctx(&format!("chmod {p}"), k.chmod(&p, 0o666))?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ctx(
            &format!("symlink /dev/{name}"),
            k.symlink(to, &format!("{dev}/{name}")),
        )?;
    }
    ctx("mkdir /dev/shm", k.mkdir(&format!("{dev}/shm"), 0o755))?;
    ctx(
        "remount /dev read-only",
        k.mount(
            "none",
            dev,
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
            None,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::Rlimits;

    /// One kernel call as [`Recorder`] saw it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Mount {
            src: String,
            target: String,
            fstype: Option<String>,
            flags: libc::c_ulong,
            data: Option<String>,
        },
        Umount {
            target: String,
            flags: libc::c_int,
        },
        PivotRootDot,
        Chdir(String),
        Mkdir {
            path: String,
            mode: u32,
        },
        MknodChar {
            path: String,
            mode: u32,
            major: u32,
            minor: u32,
        },
        Chmod {
            path: String,
            mode: u32,
        },
        Symlink {
            to: String,
            path: String,
        },
        Sethostname(String),
    }

    /// What `lstat` finds at a path the recorder was told about (anything else is missing).
    #[derive(Debug, Clone, Copy)]
    enum Found {
        Dir,
        NotDir,
    }

    /// A kernel that records every call and succeeds, except where told otherwise.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<Call>>,
        found: BTreeMap<String, Found>,
        /// The first mount whose target is this fails with EPERM.
        failing_mount: Option<String>,
    }

    impl Recorder {
        fn record(&self, c: Call) -> io::Result<()> {
            self.calls.borrow_mut().push(c);
            Ok(())
        }
        fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }
        fn mounts(&self) -> Vec<Call> {
            self.calls()
                .into_iter()
                .filter(|c| matches!(c, Call::Mount { .. }))
                .collect()
        }
    }

    impl RootKernel for Recorder {
        fn mount(
            &self,
            src: &str,
            target: &str,
            fstype: Option<&str>,
            flags: libc::c_ulong,
            data: Option<&str>,
        ) -> io::Result<()> {
            self.record(Call::Mount {
                src: src.into(),
                target: target.into(),
                fstype: fstype.map(Into::into),
                flags,
                data: data.map(Into::into),
            })?;
            if self.failing_mount.as_deref() == Some(target) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
        fn umount(&self, target: &str, flags: libc::c_int) -> io::Result<()> {
            self.record(Call::Umount {
                target: target.into(),
                flags,
            })
        }
        fn pivot_root_dot(&self) -> io::Result<()> {
            self.record(Call::PivotRootDot)
        }
        fn chdir(&self, path: &str) -> io::Result<()> {
            self.record(Call::Chdir(path.into()))
        }
        fn is_real_dir(&self, path: &str) -> io::Result<bool> {
            match self.found.get(path) {
                Some(Found::Dir) => Ok(true),
                Some(Found::NotDir) => Ok(false),
                None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        }
        fn mkdir(&self, path: &str, mode: u32) -> io::Result<()> {
            self.record(Call::Mkdir {
                path: path.into(),
                mode,
            })
        }
        fn mknod_char(&self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
            self.record(Call::MknodChar {
                path: path.into(),
                mode,
                major,
                minor,
            })
        }
        fn chmod(&self, path: &str, mode: u32) -> io::Result<()> {
            self.record(Call::Chmod {
                path: path.into(),
                mode,
            })
        }
        fn symlink(&self, to: &str, path: &str) -> io::Result<()> {
            self.record(Call::Symlink {
                to: to.into(),
                path: path.into(),
            })
        }
        fn sethostname(&self, name: &str) -> io::Result<()> {
            self.record(Call::Sethostname(name.into()))
        }
    }

    fn spec() -> SandboxSpec {
        SandboxSpec {
            job_dir: "/run/piston-runner/job-1-2".into(),
            layers: vec!["/p/t/python@3.12.0".into(), "/p/m/base".into()],
            uid: 1001,
            gid: 1001,
            hostname: "piston".into(),
            argv: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/box".into(),
            rlimits: Rlimits {
                cpu_seconds: 0,
                nofile: 64,
                fsize: 0,
                stack: 0,
                nproc: 0,
            },
            tmp_bytes: 1 << 20,
            tmp_inodes: 1000,
            seccomp: true,
            wall_backstop_s: 0,
            timings: false,
        }
    }

    const ROOT: &str = "/run/piston-runner/job-1-2/root";

    fn mount(
        src: &str,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Call {
        Call::Mount {
            src: src.into(),
            target: target.into(),
            fstype: fstype.map(Into::into),
            flags,
            data: data.map(Into::into),
        }
    }

    fn at(p: &str) -> String {
        format!("{ROOT}{p}")
    }

    /// The whole sequence, call by call: any change to a flag, an option, a mode or the order
    /// of the steps (documented in `docs/sandbox.md`) must show up here.
    /// A kernel whose /proc has what a full kernel's has.
    fn recorder() -> Recorder {
        let mut k = Recorder::default();
        k.found.insert(at("/proc/sys"), Found::Dir);
        k.found.insert(at("/proc/sysrq-trigger"), Found::NotDir);
        k
    }

    #[test]
    fn the_root_is_built_by_exactly_this_sequence() {
        let k = recorder();
        build_root(&k, &spec()).unwrap();
        let mut want = vec![
            mount("none", "/", None, libc::MS_REC | libc::MS_PRIVATE, None),
            mount(
                "overlay",
                ROOT,
                Some("overlay"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(
                    "lowerdir=/p/t/python@3.12.0:/p/m/base,\
                     upperdir=/run/piston-runner/job-1-2/upper,\
                     workdir=/run/piston-runner/job-1-2/work,\
                     index=off,metacopy=off,redirect_dir=off",
                ),
            ),
        ];
        for d in ["/proc", "/dev", "/tmp"] {
            want.push(Call::Mkdir {
                path: at(d),
                mode: 0o755,
            });
        }
        want.push(mount(
            "proc",
            &at("/proc"),
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("hidepid=2"),
        ));
        for p in ["/proc/sys", "/proc/sysrq-trigger"] {
            want.push(mount(
                &at(p),
                &at(p),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ));
            want.push(mount(
                "none",
                &at(p),
                None,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                None,
            ));
        }
        want.push(mount(
            "tmpfs",
            &at("/dev"),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("mode=755,size=64k,nr_inodes=64"),
        ));
        for (name, minor) in [
            ("null", 3),
            ("zero", 5),
            ("full", 7),
            ("random", 8),
            ("urandom", 9),
        ] {
            let path = at(&format!("/dev/{name}"));
            want.push(Call::MknodChar {
                path: path.clone(),
                mode: 0o666,
                major: 1,
                minor,
            });
            want.push(Call::Chmod { path, mode: 0o666 });
        }
        for (name, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            want.push(Call::Symlink {
                to: to.into(),
                path: at(&format!("/dev/{name}")),
            });
        }
        want.extend([
            Call::Mkdir {
                path: at("/dev/shm"),
                mode: 0o755,
            },
            mount(
                "none",
                &at("/dev"),
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
                None,
            ),
            mount(
                "tmpfs",
                &at("/dev/shm"),
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some("mode=1777,size=1048576,nr_inodes=1000"),
            ),
            mount(
                "tmpfs",
                &at("/tmp"),
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some("mode=1777,size=1048576,nr_inodes=1000"),
            ),
            Call::Chdir(ROOT.into()),
            Call::PivotRootDot,
            Call::Umount {
                target: ".".into(),
                flags: libc::MNT_DETACH,
            },
            Call::Chdir("/".into()),
            Call::Sethostname("piston".into()),
        ]);
        assert_eq!(k.calls(), want);
    }

    /// Every mount of the job's root is nosuid (a bind mount gets its flags from the remount
    /// that follows it); everything but the overlay and the tmpfs mounts for writable scratch
    /// space is noexec too; /dev and /proc's tunables end read-only.
    #[test]
    fn every_mount_is_nosuid_and_dev_ends_read_only() {
        let k = recorder();
        build_root(&k, &spec()).unwrap();
        let mounts = k.mounts();
        assert_eq!(mounts.len(), 11);
        for m in &mounts[1..] {
            let Call::Mount { target, flags, .. } = m else {
                unreachable!()
            };
            if flags & libc::MS_BIND != 0 && flags & libc::MS_REMOUNT == 0 {
                continue;
            }
            assert_ne!(flags & libc::MS_NOSUID, 0, "{target} must be nosuid");
        }
        for p in ["/proc/sys", "/proc/sysrq-trigger"] {
            let last = mounts
                .iter()
                .rev()
                .find_map(|m| match m {
                    Call::Mount { target, flags, .. } if *target == at(p) => Some(*flags),
                    _ => None,
                })
                .unwrap();
            assert_ne!(last & libc::MS_RDONLY, 0, "{p} ends read-only");
        }
        let flags_of = |t: &str| {
            mounts
                .iter()
                .filter_map(|m| match m {
                    Call::Mount { target, flags, .. } if target == t => Some(*flags),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let proc = flags_of(&at("/proc"));
        assert_eq!(proc, [libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC]);
        let dev = flags_of(&at("/dev"));
        assert_eq!(dev.len(), 2, "mounted, then remounted");
        assert_eq!(dev[1] & libc::MS_REMOUNT, libc::MS_REMOUNT);
        assert_eq!(
            dev[1] & libc::MS_RDONLY,
            libc::MS_RDONLY,
            "/dev ends read-only"
        );
        for t in [ROOT.to_string(), at("/dev/shm"), at("/tmp")] {
            assert_ne!(flags_of(&t)[0] & libc::MS_NODEV, 0, "{t} must be nodev");
        }
    }

    /// What this kernel's /proc does not have is not bound (sysrq-trigger without
    /// CONFIG_MAGIC_SYSRQ).
    #[test]
    fn missing_proc_entries_are_skipped() {
        let mut k = Recorder::default();
        k.found.insert(at("/proc/sys"), Found::Dir);
        build_root(&k, &spec()).unwrap();
        let targets: Vec<String> = k
            .mounts()
            .iter()
            .filter_map(|m| match m {
                Call::Mount { target, .. } if target.starts_with(&at("/proc/")) => {
                    Some(target.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(targets, [at("/proc/sys"), at("/proc/sys")]);
    }

    /// The first layer of the spec is the top-most: it comes first in `lowerdir`.
    #[test]
    fn lowerdir_lists_the_layers_top_most_first() {
        let k = Recorder::default();
        let mut s = spec();
        s.layers = vec!["/l/top".into(), "/l/middle".into(), "/l/bottom".into()];
        build_root(&k, &s).unwrap();
        let Call::Mount { data, .. } = &k.mounts()[1] else {
            unreachable!()
        };
        let data = data.as_deref().unwrap();
        assert!(
            data.starts_with("lowerdir=/l/top:/l/middle:/l/bottom,"),
            "{data}"
        );
    }

    /// The old root is detached only after everything is mounted, from inside the new root,
    /// and the working directory is not left in the host's tree.
    #[test]
    fn pivot_root_then_the_old_root_is_detached() {
        let k = Recorder::default();
        build_root(&k, &spec()).unwrap();
        let calls = k.calls();
        let pos = |c: &Call| calls.iter().position(|x| x == c).unwrap();
        let pivot = pos(&Call::PivotRootDot);
        let last_mount = calls
            .iter()
            .rposition(|c| matches!(c, Call::Mount { .. }))
            .unwrap();
        assert!(last_mount < pivot);
        assert_eq!(calls[pivot - 1], Call::Chdir(ROOT.into()));
        assert_eq!(
            calls[pivot + 1],
            Call::Umount {
                target: ".".into(),
                flags: libc::MNT_DETACH
            }
        );
        assert_eq!(calls[pivot + 2], Call::Chdir("/".into()));
    }

    /// Mount points the layers already have are used as they are; one that is not a real
    /// directory (a symlink could point anywhere on the host) stops the job before any mount
    /// on it.
    #[test]
    fn mount_points_must_be_real_directories() {
        let mut k = Recorder::default();
        k.found.insert(at("/proc"), Found::Dir);
        k.found.insert(at("/dev"), Found::NotDir);
        let e = build_root(&k, &spec()).unwrap_err();
        assert_eq!(e, "/dev in the layers is not a directory");
        assert_eq!(k.mounts().len(), 2, "/ private and the overlay only");
        assert!(
            !k.calls().iter().any(|c| matches!(c, Call::Mkdir { .. })),
            "an existing /proc is not recreated"
        );
    }

    /// A failing step is named, and nothing after it runs.
    #[test]
    fn a_failing_mount_stops_the_sequence() {
        let k = Recorder {
            failing_mount: Some(at("/proc")),
            ..Recorder::default()
        };
        let e = build_root(&k, &spec()).unwrap_err();
        assert!(e.starts_with("mount /proc: "), "{e}");
        assert!(
            matches!(k.calls().last(), Some(Call::Mount { target, .. }) if *target == at("/proc"))
        );
    }

    /// A relative layer path is refused before anything is mounted but `/` made private.
    #[test]
    fn relative_layer_paths_are_refused() {
        for bad in ["relative/layer", ""] {
            let k = Recorder::default();
            let mut s = spec();
            s.layers.push(bad.into());
            let e = build_root(&k, &s).unwrap_err();
            assert_eq!(e, format!("overlay path is not absolute: {bad}"));
            assert_eq!(k.calls().len(), 1, "{bad:?}");
        }
    }

    /// `\`, `:` and `,` in a layer path are escaped in the overlay options, as the kernel
    /// reads them (they used to be refused).
    #[test]
    fn unusual_layer_paths_are_escaped() {
        let k = Recorder::default();
        let mut s = spec();
        s.layers = vec!["/l/a:b".into(), "/l/c,d".into(), "/l/e\\f".into()];
        build_root(&k, &s).unwrap();
        let Call::Mount { data, .. } = &k.mounts()[1] else {
            unreachable!()
        };
        let data = data.as_deref().unwrap();
        assert!(
            data.starts_with("lowerdir=/l/a\\:b:/l/c\\,d:/l/e\\\\f,upperdir="),
            "{data}"
        );
    }
}
