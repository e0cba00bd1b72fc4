//! Overlayfs mount options, built one way for everything that mounts an overlay: ppman's runtime
//! trees, the runner's job roots and repo-builder's build stacks.
//!
//! The kernel reads the mount data of an overlay (`fs/overlayfs/params.c`, and `super.c` before
//! Linux 6.5) like this:
//!
//! * the data is split into options at every comma not preceded by a backslash;
//! * `lowerdir=` is split into layers at every colon not preceded by a backslash;
//! * in each layer path, and in `upperdir=` and `workdir=`, a backslash makes the next character
//!   literal and is dropped.
//!
//! So a path is escaped by putting a backslash before each `\`, `:` and `,` in it ([`escape`]),
//! which carries any path except one with a NUL byte (the data is a C string). Paths with a
//! newline are refused as well: `/proc/self/mountinfo` is line-based, and a path that cannot be
//! read back from it cannot be checked. Relative paths are refused: the kernel would resolve
//! them against whatever the mounting process's working directory is.
//!
//! [`split_options`] and [`split_lowerdir`] read such data back, e.g. the options of a mount
//! found in `/proc/self/mountinfo` (once its octal escapes are undone).

use std::path::{Path, PathBuf};

/// Why [`OverlayOptions::build`] refused to build the options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayOptionError {
    #[error("an overlay needs at least one lower layer")]
    NoLowerLayers,
    #[error("overlay path is not absolute: {}", path.display())]
    Relative { path: PathBuf },
    #[error("overlay path contains a NUL byte or a newline: {path:?}")]
    ControlCharacter { path: PathBuf },
    #[error("overlay path is not UTF-8: {path:?}")]
    NotUtf8 { path: PathBuf },
    #[error("overlay option {option:?} is empty or contains a comma, a NUL byte or a newline")]
    BadOption { option: String },
}

/// The mount data of one overlay: `lowerdir=…[,upperdir=…,workdir=…][,option…]`.
///
/// ```
/// use overlay_options::OverlayOptions;
/// let data = OverlayOptions::new(["/l/python", "/l/base"])
///     .upper("/job/upper", "/job/work")
///     .option("index=off")
///     .build()
///     .unwrap();
/// assert_eq!(data, "lowerdir=/l/python:/l/base,upperdir=/job/upper,workdir=/job/work,index=off");
/// ```
#[derive(Debug, Clone)]
pub struct OverlayOptions {
    lowers: Vec<PathBuf>,
    upper: Option<(PathBuf, PathBuf)>,
    options: Vec<String>,
}

impl OverlayOptions {
    /// An overlay of `lowers`, top-most first (read-only unless [`OverlayOptions::upper`]).
    pub fn new<I>(lowers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<Path>,
    {
        Self {
            lowers: lowers
                .into_iter()
                .map(|l| l.as_ref().to_path_buf())
                .collect(),
            upper: None,
            options: Vec::new(),
        }
    }

    /// The writable layer `upper` and its work directory `work` (same file system).
    #[must_use]
    pub fn upper(mut self, upper: impl AsRef<Path>, work: impl AsRef<Path>) -> Self {
        self.upper = Some((upper.as_ref().to_path_buf(), work.as_ref().to_path_buf()));
        self
    }

    /// One more option after the directories, as given (`index=off`, `redirect_dir=off`, …).
    #[must_use]
    pub fn option(mut self, option: impl Into<String>) -> Self {
        self.options.push(option.into());
        self
    }

    /// The mount data, every path escaped; or why these paths or options cannot be used.
    pub fn build(&self) -> Result<String, OverlayOptionError> {
        if self.lowers.is_empty() {
            return Err(OverlayOptionError::NoLowerLayers);
        }
        let lowers = self
            .lowers
            .iter()
            .map(|l| escaped_path(l))
            .collect::<Result<Vec<_>, _>>()?;
        let mut data = format!("lowerdir={}", lowers.join(":"));
        if let Some((upper, work)) = &self.upper {
            data.push_str(",upperdir=");
            data.push_str(&escaped_path(upper)?);
            data.push_str(",workdir=");
            data.push_str(&escaped_path(work)?);
        }
        for o in &self.options {
            if o.is_empty() || o.contains([',', '\0', '\n']) {
                return Err(OverlayOptionError::BadOption { option: o.clone() });
            }
            data.push(',');
            data.push_str(o);
        }
        Ok(data)
    }
}

fn escaped_path(path: &Path) -> Result<String, OverlayOptionError> {
    use OverlayOptionError::{ControlCharacter, NotUtf8, Relative};
    let owned = || path.to_path_buf();
    let Some(s) = path.to_str() else {
        return Err(NotUtf8 { path: owned() });
    };
    if s.contains(['\0', '\n']) {
        return Err(ControlCharacter { path: owned() });
    }
    if !s.starts_with('/') {
        return Err(Relative { path: owned() });
    }
    Ok(escape(s))
}

/// `path` with a backslash before each `\`, `:` and `,`: one layer of `lowerdir=`, or the value
/// of `upperdir=` / `workdir=`. Checks nothing (see [`OverlayOptions::build`]).
pub fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The options of overlay mount data, split at the commas the kernel splits at (those not
/// escaped by a backslash); escapes are kept, so `lowerdir=` comes out as it was built.
pub fn split_options(data: &str) -> impl Iterator<Item = &str> {
    split_unescaped(data, ',')
}

/// The layers of a `lowerdir=` value (without the `lowerdir=`), top-most first, unescaped.
pub fn split_lowerdir(value: &str) -> Vec<String> {
    split_unescaped(value, ':').map(unescape).collect()
}

/// `s` split at each `sep` not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == sep {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

/// Drops each escaping backslash (the character after it is kept as it is).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_come_top_most_first_then_upper_work_and_options_in_order() {
        let data = OverlayOptions::new(["/l/top", "/l/mid", "/l/bottom"])
            .upper("/j/upper", "/j/work")
            .option("redirect_dir=off")
            .option("index=off")
            .build()
            .unwrap();
        assert_eq!(
            data,
            "lowerdir=/l/top:/l/mid:/l/bottom,upperdir=/j/upper,workdir=/j/work,\
             redirect_dir=off,index=off"
        );
        let ro = OverlayOptions::new(vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(ro.build().unwrap(), "lowerdir=/a:/b");
    }

    #[test]
    fn backslash_colon_and_comma_are_escaped_everywhere() {
        assert_eq!(escape(r"/a\b:c,d"), r"/a\\b\:c\,d");
        assert_eq!(escape("/plain/path@1.0_x-y"), "/plain/path@1.0_x-y");
        let data = OverlayOptions::new(["/l/a:b", r"/l/c\d"])
            .upper("/j/up,per", "/j/wo:rk")
            .build()
            .unwrap();
        assert_eq!(
            data,
            r"lowerdir=/l/a\:b:/l/c\\d,upperdir=/j/up\,per,workdir=/j/wo\:rk"
        );
    }

    #[test]
    fn what_is_built_reads_back() {
        let lowers = ["/l/a:b,c", r"/l/x\y", r"/l/\:,\\", "/l/plain"];
        let data = OverlayOptions::new(lowers)
            .upper("/j/u,1", "/j/w:2")
            .option("index=off")
            .build()
            .unwrap();
        let options: Vec<&str> = split_options(&data).collect();
        assert_eq!(options.len(), 4, "{options:?}");
        let lowerdir = options[0].strip_prefix("lowerdir=").unwrap();
        assert_eq!(split_lowerdir(lowerdir), lowers);
        assert_eq!(options[1], r"upperdir=/j/u\,1");
        assert_eq!(options[2], r"workdir=/j/w\:2");
        assert_eq!(options[3], "index=off");
    }

    #[test]
    fn splitting_follows_the_kernel() {
        let split = |s| split_options(s).collect::<Vec<_>>();
        assert_eq!(split("ro,lowerdir=/a:/b"), ["ro", "lowerdir=/a:/b"]);
        assert_eq!(split(r"a\,b,c"), [r"a\,b", "c"]);
        assert_eq!(
            split(r"a\\,b"),
            [r"a\\", "b"],
            "an escaped backslash escapes nothing"
        );
        assert_eq!(split(""), [""]);
        assert_eq!(split_lowerdir("/a:/b"), ["/a", "/b"]);
        assert_eq!(split_lowerdir(r"/a\:b:/c"), ["/a:b", "/c"]);
    }

    #[test]
    fn unusable_paths_are_refused() {
        let build = |lowers: &[&str]| OverlayOptions::new(lowers).build();
        assert_eq!(build(&[]), Err(OverlayOptionError::NoLowerLayers));
        for bad in ["relative", "", "./x"] {
            assert_eq!(
                build(&["/ok", bad]),
                Err(OverlayOptionError::Relative { path: bad.into() }),
                "{bad:?}"
            );
        }
        for bad in ["/a\0b", "/a\nb"] {
            assert_eq!(
                build(&[bad]),
                Err(OverlayOptionError::ControlCharacter { path: bad.into() })
            );
        }
        let upper = OverlayOptions::new(["/l"]).upper("/u", "w").build();
        assert_eq!(
            upper,
            Err(OverlayOptionError::Relative { path: "w".into() })
        );
        use std::os::unix::ffi::OsStrExt;
        let latin1 = Path::new(std::ffi::OsStr::from_bytes(b"/caf\xe9"));
        assert!(matches!(
            OverlayOptions::new([latin1]).build(),
            Err(OverlayOptionError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn unusable_options_are_refused() {
        for bad in ["", "a,b", "a\0", "a\n"] {
            assert_eq!(
                OverlayOptions::new(["/l"]).option(bad).build(),
                Err(OverlayOptionError::BadOption { option: bad.into() })
            );
        }
        let e = OverlayOptions::new(["rel"]).build().unwrap_err();
        assert_eq!(e.to_string(), "overlay path is not absolute: rel");
    }
}
