//! What the workspace's binaries (`ppman`, `repo-builder`, `piston`) do alike around their
//! libraries: logs through `tracing` to stderr filtered by `RUST_LOG` ([`init_tracing`],
//! [`init_tracing_or`]), and a failure rendered as an `error: …` line, a `caused by: …` line per
//! source and a `hint: …` line where one helps ([`report`]), with an exit code that tells user
//! errors from internal ones ([`exit_code`]).
//!
//! Errors are taken as `&(dyn Error + 'static)`: an `anyhow::Error` derefs to that.

use std::error::Error;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Exit code of a failure the user can fix (a bad argument, option or request).
pub const USER_ERROR: u8 = 2;
/// Exit code of any other failure.
pub const INTERNAL_ERROR: u8 = 1;

/// Logs to stderr, filtered by `RUST_LOG` (errors only when it is unset).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
}

/// Logs to stderr, filtered by `RUST_LOG` when it is set and valid, else by `default_filter`
/// (e.g. `info`); coloured only when stderr is a terminal.
pub fn init_tracing_or(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The lines [`report`] writes: `error: <error>`, `caused by: <source>` for each source in
/// order, then `hint: <hint>` if there is one; each ends with a newline.
pub fn render(error: &(dyn Error + 'static), hint: Option<&str>) -> String {
    let mut out = format!("error: {error}\n");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = writeln!(out, "caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = hint {
        let _ = writeln!(out, "hint: {hint}");
    }
    out
}

/// Writes `error`, its causes and `hint` to stderr (see [`render`]).
pub fn report(error: &(dyn Error + 'static), hint: Option<&str>) {
    eprint!("{}", render(error, hint));
}

/// [`USER_ERROR`] when `user_error`, else [`INTERNAL_ERROR`].
pub fn exit_code(user_error: bool) -> ExitCode {
    ExitCode::from(if user_error {
        USER_ERROR
    } else {
        INTERNAL_ERROR
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure {
        message: &'static str,
        source: Option<Box<Failure>>,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl Error for Failure {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|s| s as &(dyn Error + 'static))
        }
    }

    fn failure(messages: &[&'static str]) -> Failure {
        let (first, rest) = messages.split_first().unwrap();
        Failure {
            message: first,
            source: (!rest.is_empty()).then(|| Box::new(failure(rest))),
        }
    }

    #[test]
    fn one_error_line_then_a_cause_line_per_source() {
        assert_eq!(render(&failure(&["it broke"]), None), "error: it broke\n");
        assert_eq!(
            render(
                &failure(&[
                    "cannot install python",
                    "download failed",
                    "connection reset"
                ]),
                None
            ),
            "error: cannot install python\n\
             caused by: download failed\n\
             caused by: connection reset\n"
        );
    }

    #[test]
    fn the_hint_comes_last() {
        assert_eq!(
            render(
                &failure(&["index of repository test", "bad signature"]),
                Some("check the key")
            ),
            "error: index of repository test\ncaused by: bad signature\nhint: check the key\n"
        );
    }

    #[test]
    fn user_and_internal_errors_exit_differently() {
        assert_eq!(exit_code(true), ExitCode::from(2));
        assert_eq!(exit_code(false), ExitCode::from(1));
        assert_eq!(exit_code(false), ExitCode::FAILURE);
    }
}
