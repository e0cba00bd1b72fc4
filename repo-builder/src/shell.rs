//! Running build steps: shell quoting, mount scripts for a private mount namespace, captured logs.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use overlay_options::{OverlayOptionError, OverlayOptions};

use crate::Error;

/// Quotes `s` for POSIX sh.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a path for POSIX sh.
pub fn qp(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The stack a build or a test runs on: read-only images (top-most first), mounted inside a private
/// mount namespace so every mount (and every loop device, which frees itself) disappears with it,
/// whatever happens to the process.
#[derive(Debug)]
pub struct StackScript {
    script: String,
}

impl StackScript {
    /// Mounts `images` read-only under `scratch/l<i>` and an overlay of them at `merged`, with
    /// `upper`/`work` as the writable layer, then `/proc`, `/dev`, `/sys` inside it. Fails when
    /// a path cannot go into overlay options (it is relative, or holds a NUL or a newline).
    pub fn new(
        images: &[PathBuf],
        scratch: &Path,
        upper: &Path,
        work: &Path,
        merged: &Path,
    ) -> Result<Self, OverlayOptionError> {
        let mut s = String::from("set -eu\nmount --make-rprivate /\n");
        let mut lowers = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let dir = scratch.join(format!("l{i}"));
            let _ = writeln!(
                s,
                "mkdir -p {d}\nmount -t squashfs -o loop,ro,nodev,nosuid {img} {d}",
                d = qp(&dir),
                img = qp(image)
            );
            lowers.push(dir);
        }
        // Escaped for overlayfs first, then quoted for the shell.
        let opts = OverlayOptions::new(&lowers)
            .upper(upper, work)
            .option("redirect_dir=off")
            .option("index=off")
            .option("metacopy=off")
            .build()?;
        let _ = writeln!(
            s,
            "mkdir -p {m}\nmount -t overlay overlay -o {opts} {m}",
            m = qp(merged),
            opts = quote(&opts)
        );
        let _ = writeln!(
            s,
            "mkdir -p {m}/proc {m}/dev {m}/sys\nmount -t proc proc {m}/proc\nmount --rbind /dev {m}/dev\nmount -t sysfs -o ro sysfs {m}/sys",
            m = qp(merged)
        );
        Ok(Self { script: s })
    }

    /// Appends a line of shell.
    pub fn push(&mut self, line: &str) -> &mut Self {
        self.script.push_str(line);
        self.script.push('\n');
        self
    }

    /// The script text.
    pub fn text(&self) -> &str {
        &self.script
    }
}

/// Runs `cmd`, sending stdout and stderr to `log`; a non-zero exit becomes [`Error::StepFailed`]
/// with the tail of the log.
pub fn run_logged(mut cmd: Command, what: &str, log: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: log.to_owned(),
        source,
    };
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| Error::Spawn {
            what: what.to_owned(),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::StepFailed {
        what: what.to_owned(),
        status: status.code().map_or_else(
            || "killed by a signal".to_owned(),
            |c| format!("exit code {c}"),
        ),
        tail: log_tail(log, 25),
        log: log.to_owned(),
    })
}

/// The last `n` lines of a log file.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A command that runs `script` with `sh` in new, private mount (and optionally network and PID) namespaces.
pub fn unshared(script: &str, isolate_network: bool) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount").arg("--propagation").arg("private");
    if isolate_network {
        cmd.arg("--net")
            .arg("--pid")
            .arg("--fork")
            .arg("--kill-child");
    }
    cmd.arg("--").arg("/bin/sh").arg("-c").arg(script);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("/a/b-c.d"), "/a/b-c.d");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn the_overlay_line_escapes_for_overlayfs_then_quotes_for_sh() {
        let p = PathBuf::from;
        let script = StackScript::new(
            &[p("/out/a.sqfs"), p("/out/b.sqfs")],
            Path::new("/w/lower"),
            Path::new("/w/up,per"),
            Path::new("/w/ovl:work"),
            Path::new("/w/merged"),
        )
        .unwrap();
        let line = script
            .text()
            .lines()
            .find(|l| l.starts_with("mount -t overlay"))
            .unwrap();
        assert_eq!(
            line,
            r"mount -t overlay overlay -o 'lowerdir=/w/lower/l0:/w/lower/l1,upperdir=/w/up\,per,workdir=/w/ovl\:work,redirect_dir=off,index=off,metacopy=off' /w/merged"
        );
        let relative = StackScript::new(
            &[p("/out/a.sqfs")],
            Path::new("lower"),
            &p("/u"),
            &p("/w"),
            &p("/m"),
        );
        assert!(matches!(relative, Err(OverlayOptionError::Relative { .. })));
    }
}
