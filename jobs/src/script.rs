//! A package's stage scripts (`compile`, `run`) and `environment`, as the runner reads them once
//! per package: what the environment exports, which shell runs each script, and whether a script
//! is a plain `exec` the runner can do itself.
//!
//! Piston starts every stage as `bash <script> ARGS`. A script whose first line is `#!/bin/sh`
//! asks for no more than POSIX sh and gets `/bin/sh` (dash starts faster: BENCHMARKS.md,
//! "Stage scripts"). Such a script that does nothing but `exec` a program with literal words and the arguments —
//! most `run` scripts: `exec python3 "$@"`, `shift` then `exec ./a.out "$@"` — is not run at all:
//! the runner execs the program itself with the argv the shell would have built, so a job starts
//! one program instead of two. Anything else in the script (a variable, a quote, a redirection, a
//! second command) keeps the shell.

/// The files of a package that [`PackageInfo`] is read from.
pub(crate) const PACKAGE_INFO_FILES: [&str; 3] = ["environment", "compile", "run"];

/// A stage script longer than this always runs under its shell.
const MAX_EXEC_SCRIPT: usize = 4096;

/// What the runner reads from a package once, in a sandbox on its tree, and then caches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageInfo {
    /// The stages' environment: every variable exported after `environment` was sourced (in the
    /// package directory) on top of [`crate::JobsConfig::stage_env`], the shell's own left out.
    pub env: Vec<(String, String)>,
    pub compile: StageScript,
    pub run: StageScript,
}

/// How a stage script is started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageScript {
    pub shell: StageShell,
    /// Set when the script is a plain `exec` (see the module docs).
    pub exec: Option<ExecScript>,
}

/// The shell that runs a stage script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StageShell {
    #[default]
    Bash,
    Posix,
}

/// A script that is, apart from its `#!/bin/sh` line, comments and blank lines, an optional
/// `shift` and then `exec WORD...`, each word a literal or `"$@"` or `"$1"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecScript {
    shift: usize,
    words: Vec<ExecWord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ExecWord {
    Literal(String),
    /// `"$@"`: every argument, each a word (none when there are none).
    AllArgs,
    /// `"$1"`: the first argument, one word (empty when there is none).
    FirstArg,
}

impl StageShell {
    /// The shell a script with this first line runs under: only `#!/bin/sh` (or
    /// `#!/usr/bin/env sh`, or `/usr/bin/sh`) chooses POSIX sh; anything else, or none, is bash.
    pub fn of_first_line(line: &str) -> StageShell {
        let Some(interpreter) = line.strip_prefix("#!") else {
            return StageShell::Bash;
        };
        match interpreter.split_whitespace().collect::<Vec<_>>()[..] {
            ["/bin/sh"] | ["/usr/bin/sh"] | ["/usr/bin/env", "sh"] => StageShell::Posix,
            _ => StageShell::Bash,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            StageShell::Bash => "/bin/bash",
            StageShell::Posix => "/bin/sh",
        }
    }
}

impl StageScript {
    /// Reads a script's text (empty when there is none).
    pub fn parse(text: &str) -> StageScript {
        let shell = StageShell::of_first_line(text.split('\n').next().unwrap_or_default());
        let exec = match shell {
            StageShell::Posix if text.len() <= MAX_EXEC_SCRIPT => ExecScript::parse(text),
            _ => None,
        };
        StageScript { shell, exec }
    }

    /// The plain `exec` that replaces the shell on `args`, if any: the shell's `shift` with no
    /// argument is an error, which is left to the shell to report.
    fn exec_for(&self, args: &[String]) -> Option<&ExecScript> {
        self.exec.as_ref().filter(|e| args.len() >= e.shift)
    }

    /// The argv that runs the script at `path` (inside the sandbox) on `args`: the program
    /// itself for a plain `exec`, else the shell on the script.
    pub fn argv(&self, path: &str, args: &[String]) -> Vec<String> {
        match self.exec_for(args) {
            Some(exec) => exec.argv(&args[exec.shift..]),
            None => [self.shell.path().to_owned(), path.to_owned()]
                .into_iter()
                .chain(args.iter().cloned())
                .collect(),
        }
    }

    /// Whether [`StageScript::argv`] on `args` skips the shell.
    pub fn skips_shell(&self, args: &[String]) -> bool {
        self.exec_for(args).is_some()
    }

    /// The environment the started program gets on `args` in the directory `cwd`: `env`, and
    /// when the shell is skipped `PWD=cwd`, which the shell would have exported on its way.
    pub fn env(
        &self,
        env: &[(String, String)],
        args: &[String],
        cwd: &str,
    ) -> Vec<(String, String)> {
        let mut env = env.to_vec();
        if self.skips_shell(args) {
            env.retain(|(k, _)| k != "PWD");
            env.push(("PWD".into(), cwd.into()));
        }
        env
    }
}

impl ExecScript {
    fn parse(text: &str) -> Option<ExecScript> {
        let blank = [' ', '\t'];
        let mut shift = 0;
        let mut words = None;
        // Not `lines()`: a `\r` before the newline is part of the last word for the shell.
        for line in text.split('\n').skip(1) {
            let line = line.trim_matches(blank);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if words.is_some() {
                return None;
            }
            if line == "shift" && shift == 0 {
                shift = 1;
                continue;
            }
            let rest = line.strip_prefix("exec")?;
            if !rest.starts_with(blank) {
                return None;
            }
            let parsed: Option<Vec<ExecWord>> = rest
                .split(blank)
                .filter(|w| !w.is_empty())
                .map(ExecWord::parse)
                .collect();
            words = Some(parsed?);
        }
        let words = words?;
        match words.first() {
            Some(ExecWord::Literal(program)) if !program.starts_with('-') => {}
            _ => return None,
        }
        Some(ExecScript { shift, words })
    }

    fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.words.len() + args.len());
        for w in &self.words {
            match w {
                ExecWord::Literal(s) => argv.push(s.clone()),
                ExecWord::AllArgs => argv.extend(args.iter().cloned()),
                ExecWord::FirstArg => argv.push(args.first().cloned().unwrap_or_default()),
            }
        }
        argv
    }
}

/// Whether the shell passes `word` through unchanged (no quoting, expansion or splitting can
/// touch it): letters, digits and `_ - + = : , . / @ %` only.
pub fn is_plain_shell_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+=:,./@%".contains(&b))
}

impl ExecWord {
    /// A word the shell would pass through unchanged, or one of the two argument expansions.
    fn parse(word: &str) -> Option<ExecWord> {
        match word {
            "\"$@\"" => Some(ExecWord::AllArgs),
            "\"$1\"" => Some(ExecWord::FirstArg),
            _ if is_plain_shell_word(word) => Some(ExecWord::Literal(word.to_owned())),
            _ => None,
        }
    }
}

/// Prints `compile` and `run` (empty if there is none; at most `$2` characters, one more than
/// [`MAX_EXEC_SCRIPT`], so a longer script is seen to be longer), then the exported variables
/// after sourcing the package's environment (cwd = package dir), all NUL-separated; bash builtins
/// alone, so it works in any tree.
const INFO_SCRIPT: &str = r#"cd -- "$1" || exit 1
limit=$2; set -- "$1"
for s in compile run; do t=; if [ -f "$s" ]; then IFS= read -r -d '' -n "$limit" t < "$s"; fi; printf '%s\0' "$t"; done
if [ -f ./environment ]; then . ./environment; fi
for n in $(compgen -e); do printf '%s=%s\0' "$n" "${!n}"; done"#;

/// Variables of the shell itself, not of the package.
const SHELL_VARS: [&str; 4] = ["PWD", "OLDPWD", "SHLVL", "_"];

/// The command, run inside a runtime's tree with [`crate::JobsConfig::stage_env`], that prints
/// what [`parse_package_info`] reads.
pub fn package_info_command(package_dir: &str) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-c".into(),
        INFO_SCRIPT.into(),
        "piston".into(),
        package_dir.into(),
        (MAX_EXEC_SCRIPT + 1).to_string(),
    ]
}

/// What [`package_info_command`] printed, without the shell's own variables.
pub fn parse_package_info(stdout: &str) -> PackageInfo {
    let mut fields = stdout.split('\0');
    let mut script = || StageScript::parse(fields.next().unwrap_or_default());
    let (compile, run) = (script(), script());
    let env = fields
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !k.is_empty() && !SHELL_VARS.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PackageInfo { env, compile, run }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shells_follow_the_first_line() {
        for posix in [
            "#!/bin/sh",
            "#! /bin/sh ",
            "#!/usr/bin/sh",
            "#!/usr/bin/env sh",
        ] {
            assert_eq!(
                StageShell::of_first_line(posix),
                StageShell::Posix,
                "{posix}"
            );
        }
        for bash in [
            "",
            "#!/usr/bin/env bash",
            "#!/bin/bash",
            "#!/bin/sh -e",
            "# /bin/sh",
            "#!/bin/shell",
            "echo #!/bin/sh",
        ] {
            assert_eq!(StageShell::of_first_line(bash), StageShell::Bash, "{bash}");
        }
        assert_eq!(StageShell::Posix.path(), "/bin/sh");
        assert_eq!(StageShell::Bash.path(), "/bin/bash");
    }

    #[test]
    fn plain_exec_scripts_skip_the_shell() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "#!/bin/sh\nexec python3 \"$@\"\n",
                &["a.py", "x y"],
                &["python3", "a.py", "x y"],
            ),
            ("#!/bin/sh\nexec bash \"$@\"", &["m.sh"], &["bash", "m.sh"]),
            (
                "#!/bin/sh\n# the binary\n\n  shift\n\texec ./a.out \"$@\"  \n# end\n",
                &["main.c", "1", ""],
                &["./a.out", "1", ""],
            ),
            (
                "#!/bin/sh\nshift\nexec ./a.out \"$@\"\n",
                &["main.c"],
                &["./a.out"],
            ),
            (
                "#!/bin/sh\nexec gforth \"$1\" -e bye\n",
                &["m.fs", "ignored"],
                &["gforth", "m.fs", "-e", "bye"],
            ),
            (
                "#!/bin/sh\nexec java -Xss8m -Djava.io.tmpdir=/tmp -cp /usr/share/java/x.jar Main \"$@\"\n",
                &["a"],
                &[
                    "java",
                    "-Xss8m",
                    "-Djava.io.tmpdir=/tmp",
                    "-cp",
                    "/usr/share/java/x.jar",
                    "Main",
                    "a",
                ],
            ),
        ];
        for (text, given, argv) in cases {
            let s = StageScript::parse(text);
            assert_eq!(s.shell, StageShell::Posix, "{text}");
            assert!(s.skips_shell(&args(given)), "{text}");
            assert_eq!(s.argv("/p/run", &args(given)), args(argv), "{text}");
        }
    }

    #[test]
    fn anything_else_keeps_the_shell() {
        for text in [
            "#!/usr/bin/env bash\nexec bash \"$@\"\n",
            "exec bash \"$@\"\n",
            "#!/bin/sh\n",
            "#!/bin/sh\nexec\n",
            "#!/bin/sh\nexecbash \"$@\"\n",
            "#!/bin/sh\nexec bc -q \"$1\" </dev/null\n",
            "#!/bin/sh\nexec sqlite3 < \"$1\"\n",
            "#!/bin/sh\nexport A=1\nexec a \"$@\"\n",
            "#!/bin/sh\nexec $CC \"$@\"\n",
            "#!/bin/sh\nexec a \"$2\"\n",
            "#!/bin/sh\nexec a $@\n",
            "#!/bin/sh\nexec a '$@'\n",
            "#!/bin/sh\nexec a *.c\n",
            "#!/bin/sh\nexec ~/a\n",
            "#!/bin/sh\nexec a; echo b\n",
            "#!/bin/sh\nexec a \"$@\"\necho never\n",
            "#!/bin/sh\nshift\nshift\nexec a \"$@\"\n",
            "#!/bin/sh\nexec -a x prog\n",
            "#!/bin/sh\r\nexec a \"$@\"\r\n",
            "#!/bin/sh\nexec a\u{c}b\n",
            "#!/bin/sh\nfile=\"$1\"\nshift\nexec node \"$file.js\" \"$@\"\n",
        ] {
            let s = StageScript::parse(text);
            assert_eq!(s.exec, None, "{text:?}");
        }
        let long = format!(
            "#!/bin/sh\n{}\nexec a \"$@\"\n",
            "#".repeat(MAX_EXEC_SCRIPT)
        );
        assert_eq!(StageScript::parse(&long).exec, None);
        let script = StageScript::parse("#!/bin/sh\necho \"$@\"\n");
        assert_eq!(
            script.argv("/p/run", &args(&["a", "b"])),
            args(&["/bin/sh", "/p/run", "a", "b"])
        );
        let bash = StageScript::parse("");
        assert_eq!(
            bash.argv("/p/compile", &[]),
            args(&["/bin/bash", "/p/compile"])
        );
    }

    #[test]
    fn a_shift_without_arguments_is_left_to_the_shell() {
        let s = StageScript::parse("#!/bin/sh\nshift\nexec ./a.out \"$@\"\n");
        assert!(!s.skips_shell(&[]));
        assert_eq!(s.argv("/p/run", &[]), args(&["/bin/sh", "/p/run"]));
    }

    #[test]
    fn package_info_is_read_from_the_scripts_output() {
        let info = parse_package_info(
            "#!/bin/sh\nexec a \"$@\"\0#!/usr/bin/env bash\nexec b \"$@\"\0A=1\0PWD=/x\0B=x=y\0",
        );
        assert_eq!(info.compile.shell, StageShell::Posix);
        assert!(info.compile.exec.is_some());
        assert_eq!(info.run, StageScript::default());
        let env = [("A", "1"), ("B", "x=y")].map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(info.env, env);
        // No compile script, no environment.
        let info = parse_package_info("\0#!/bin/sh\necho\0");
        assert_eq!(
            (info.compile.shell, info.run.shell),
            (StageShell::Bash, StageShell::Posix)
        );
        assert!(info.env.is_empty());
        assert_eq!(parse_package_info(""), PackageInfo::default());
    }
}
