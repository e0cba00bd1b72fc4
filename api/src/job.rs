//! From a JSON request to a [`JobRequest`]: Piston's `get_job` validation, in Piston's order and
//! with Piston's messages, then limit resolution and file decoding.
//!
//! Where Piston fails late or silently (a path escaping the job directory is a 500 with an empty
//! body; invalid base64 or hex is decoded leniently into garbage; a non-string `stdin` crashes), this
//! answers 400 with a message, after all of Piston's own checks so that their order is unchanged.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::config::{GlobalLimits, LimitOverrideTable};
use crate::engine::{JobFile, JobRequest, Runtime, StageLimits};

/// A request refused with a message for the client (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// The effective limit of `runtime` for `key`: `PISTON_LIMIT_OVERRIDES[language][key]`, else the
/// package's `limit_overrides[key]`, else the global value. Like Piston's `||` chain, a `0`
/// override counts as absent.
pub fn effective_limit(
    global: &GlobalLimits,
    overrides: &LimitOverrideTable,
    runtime: &Runtime,
    key: &str,
) -> i64 {
    let from_env = overrides
        .get(&runtime.language)
        .and_then(|l| l.get(key))
        .copied();
    let from_package = runtime.limit_overrides.get(key).copied();
    from_env
        .filter(|v| *v != 0)
        .or(from_package.filter(|v| *v != 0))
        .or_else(|| global.get(key))
        .unwrap_or(0)
}

pub use jobs::find_runtime;

/// Normalises a submitted file name to a path relative to the job directory. A leading `/` is
/// relative (as Node's `path.join` makes it); `..` may not climb out of the directory.
pub fn normalize_file_name(name: &str) -> Result<String, Invalid> {
    if name.contains('\0') {
        return Err(invalid(format!("File path {name:?} contains a NUL byte")));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(format!(
                        "File path \"{name}\" tries to escape parent directory"
                    )));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(invalid(format!(
            "File path \"{name}\" does not name a file"
        )));
    }
    Ok(parts.join("/"))
}

/// Decodes a file's content. Whitespace inside base64 and hex is ignored (line-wrapped output of
/// `base64` is common); anything else invalid is refused instead of being silently mangled.
fn decode_content(index: usize, encoding: &str, content: &str) -> Result<Vec<u8>, Invalid> {
    let compact = || {
        content
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
    };
    match encoding {
        "base64" => {
            let text = compact();
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                    .with_decode_allow_trailing_bits(true),
            );
            lenient
                .decode(&text)
                .or_else(|_| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(text.trim_end_matches('='))
                })
                .map_err(|e| invalid(format!("files[{index}].content is not valid base64: {e}")))
        }
        "hex" => hex::decode(compact())
            .map_err(|e| invalid(format!("files[{index}].content is not valid hex: {e}"))),
        _ => Ok(content.as_bytes().to_vec()),
    }
}

/// Whether a JSON value is falsy in JavaScript.
fn falsy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

fn string_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// The checks of Piston's `get_job`, in order, then this server's own. `body` is the parsed JSON
/// (anything but an object behaves as `{}`).
pub fn validate(
    body: &Value,
    runtimes: &[Runtime],
    global: &GlobalLimits,
    overrides: &LimitOverrideTable,
) -> Result<JobRequest, Invalid> {
    let empty = Value::Object(serde_json::Map::new());
    let body = if body.is_object() { body } else { &empty };

    let (language, version, files) = required_fields(body)?;
    check_file_contents(files)?;
    let runtime = find_runtime(runtimes, language, version)
        .ok_or_else(|| invalid(format!("{language}-{version} runtime is unknown")))?;
    check_code_files(runtime, files)?;
    let limit = |key: &str| effective_limit(global, overrides, runtime, key);
    let requested = requested_limits(body, &limit)?;

    // This server's own checks.
    let stdin = stdin(body)?;
    let args = args(body)?;
    let files = decode_files(files, runtime)?;
    Ok(JobRequest {
        runtime: runtime.clone(),
        files,
        args,
        stdin,
        compile: runtime
            .compiled
            .then(|| stage_limits("compile", &requested, &limit)),
        run: stage_limits("run", &requested, &limit),
    })
}

/// Piston's checks 1-3: `language`, `version` and `files`.
fn required_fields(body: &Value) -> Result<(&str, &str, &[Value]), Invalid> {
    let language = string_field(body, "language")
        .ok_or_else(|| invalid("language is required as a string"))?;
    let version =
        string_field(body, "version").ok_or_else(|| invalid("version is required as a string"))?;
    let files = body
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("files is required as an array"))?;
    Ok((language, version, files))
}

/// Piston's check 4: every file has string content.
fn check_file_contents(files: &[Value]) -> Result<(), Invalid> {
    for (i, file) in files.iter().enumerate() {
        if file.get("content").and_then(Value::as_str).is_none() {
            return Err(invalid(format!(
                "files[{i}].content is required as a string"
            )));
        }
    }
    Ok(())
}

/// Piston's check 6 (5 is the runtime): at least one code file (encoding absent or utf8), except
/// for the `file` language.
fn check_code_files(runtime: &Runtime, files: &[Value]) -> Result<(), Invalid> {
    let is_utf8 = |f: &Value| {
        falsy(f.get("encoding")) || f.get("encoding").and_then(Value::as_str) == Some("utf8")
    };
    if runtime.language != "file" && !files.iter().any(is_utf8) {
        return Err(invalid("files must include at least one utf8 encoded file"));
    }
    Ok(())
}

/// Piston's check 7: the limits the request asks for, against the effective ones (`limit`), by
/// name (`run_timeout`, …).
fn requested_limits(
    body: &Value,
    limit: &impl Fn(&str) -> i64,
) -> Result<BTreeMap<String, f64>, Invalid> {
    let mut requested = BTreeMap::new();
    for constraint in ["memory_limit", "timeout", "cpu_time"] {
        for stage in ["compile", "run"] {
            let name = format!("{stage}_{constraint}");
            let value = body.get(&name);
            if falsy(value) {
                continue;
            }
            let Some(number) = value.and_then(Value::as_f64) else {
                return Err(invalid(format!("If specified, {name} must be a number")));
            };
            // -1 is how Piston's README and many clients say "no memory limit of my own": it
            // gets the configured limit (Piston refuses it when the operator set one, and this
            // server has finite defaults), so those clients keep working.
            if constraint == "memory_limit" && number == -1.0 {
                continue;
            }
            let configured = limit(&name);
            if configured > 0 {
                if number > configured as f64 {
                    return Err(invalid(format!(
                        "{name} cannot exceed the configured limit of {configured}"
                    )));
                }
                if number < 0.0 {
                    return Err(invalid(format!("{name} must be non-negative")));
                }
            }
            requested.insert(name, number);
        }
    }
    Ok(requested)
}

/// `stdin`: a string, or absent; it always ends with a newline, as in Piston.
fn stdin(body: &Value) -> Result<Vec<u8>, Invalid> {
    let mut stdin = match body.get("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("stdin must be a string")),
    };
    if !stdin.ends_with('\n') {
        stdin.push('\n');
    }
    Ok(stdin.into_bytes())
}

/// `args`: strings (numbers and booleans are written out), or absent.
fn args(body: &Value) -> Result<Vec<String>, Invalid> {
    match body.get("args") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(invalid("args must be an array of strings")),
            })
            .collect(),
        Some(_) => Err(invalid("args must be an array of strings")),
    }
}

/// How many files and directories a job's files may make in its directory. The job directory
/// holds 65536 inodes; the rest are the program's. A 1 MiB body holds about 70,000 empty
/// files, or a few deep paths of thousands of directories.
pub const MAX_FILE_ENTRIES: usize = 4096;

/// Refuses two files of one name and more than [`MAX_FILE_ENTRIES`] files and directories in
/// all, in one pass (hash sets: a request of thousands of files costs milliseconds, not the
/// quadratic comparison of every pair).
fn check_entries(files: &[JobFile]) -> Result<(), Invalid> {
    let mut names = std::collections::HashSet::with_capacity(files.len());
    let mut dirs = std::collections::HashSet::new();
    for (i, file) in files.iter().enumerate() {
        if !names.insert(file.name.as_str()) {
            return Err(invalid(format!(
                "files[{i}].name {:?} is used by another file",
                file.name
            )));
        }
        let mut parent = file.name.as_str();
        let mut clash = dirs.contains(parent);
        while let Some((dir, _)) = parent.rsplit_once('/') {
            clash |= names.contains(dir);
            if !dirs.insert(dir) {
                break;
            }
            parent = dir;
        }
        if clash {
            return Err(invalid(format!(
                "files[{i}].name {:?} is both a file and a directory of another file",
                file.name
            )));
        }
        if names.len() + dirs.len() > MAX_FILE_ENTRIES {
            return Err(invalid(format!(
                "files: a job may have at most {MAX_FILE_ENTRIES} files and directories; \
                 files[{i}] is past that"
            )));
        }
    }
    Ok(())
}

/// The files, named, normalised and decoded; two files may not have the same name.
fn decode_files(files: &[Value], runtime: &Runtime) -> Result<Vec<JobFile>, Invalid> {
    if files.len() > MAX_FILE_ENTRIES {
        return Err(invalid(format!(
            "files: a job may have at most {MAX_FILE_ENTRIES} files and directories; this \
             request has {} files",
            files.len()
        )));
    }
    let mut job_files = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let name = match file.get("name") {
            Some(v) if !falsy(Some(v)) => match v.as_str() {
                Some(s) => s.to_owned(),
                None => return Err(invalid(format!("files[{i}].name must be a string"))),
            },
            _ => format!("file{i}.code"),
        };
        let name = normalize_file_name(&name)?;
        // Piston treats any value but base64 and hex as utf8.
        let encoding = file
            .get("encoding")
            .and_then(Value::as_str)
            .filter(|e| ["base64", "hex"].contains(e))
            .unwrap_or("utf8");
        let content = file
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let content = decode_content(i, encoding, content)?;
        let code = encoding == "utf8" || runtime.language == "file";
        job_files.push(JobFile {
            name,
            content,
            code,
        });
    }
    check_entries(&job_files)?;
    Ok(job_files)
}

/// The limits of `stage` (`compile` or `run`): what the request asked for, else the effective
/// limit.
fn stage_limits(
    stage: &str,
    requested: &BTreeMap<String, f64>,
    limit: &impl Fn(&str) -> i64,
) -> StageLimits {
    let pick = |constraint: &str| {
        let name = format!("{stage}_{constraint}");
        requested.get(&name).copied().unwrap_or(limit(&name) as f64)
    };
    let millis = |v: f64| v.max(0.0).ceil() as u64;
    let memory = pick("memory_limit");
    StageLimits {
        wall_timeout_ms: millis(pick("timeout")),
        cpu_time_ms: millis(pick("cpu_time")),
        memory_bytes: (memory >= 0.0).then_some(memory as u64),
        max_processes: limit("max_process_count").max(1) as u64,
        max_open_files: limit("max_open_files").max(1) as u64,
        max_file_size: limit("max_file_size").max(0) as u64,
        output_max_size: limit("output_max_size").max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn runtimes() -> Vec<Runtime> {
        let rt = |language: &str, version: &str, package: &str, compiled: bool| Runtime {
            language: language.to_owned(),
            version: version.parse().unwrap(),
            aliases: vec![format!("{language}-alias")],
            package: package.to_owned(),
            compiled,
            limit_overrides: BTreeMap::new(),
        };
        let mut zig = rt("zig", "0.10.1", "zig", true);
        zig.limit_overrides
            .insert("compile_timeout".to_owned(), 15000);
        vec![
            rt("python", "3.10.0", "python", false),
            rt("python", "3.12.0", "python", false),
            rt("c++", "10.2.0", "gcc", true),
            rt("file", "0.0.1", "file", false),
            zig,
        ]
    }

    fn check(body: &Value) -> Result<JobRequest, String> {
        validate(
            body,
            &runtimes(),
            &GlobalLimits::default(),
            &LimitOverrideTable::new(),
        )
        .map_err(|e| e.0)
    }

    #[test]
    fn highest_matching_version_wins() {
        let job =
            check(&json!({"language":"python","version":"3.x","files":[{"content":"x"}]})).unwrap();
        assert_eq!(job.runtime.version.to_string(), "3.12.0");
        let job =
            check(&json!({"language":"python-alias","version":"3.10","files":[{"content":"x"}]}))
                .unwrap();
        assert_eq!(job.runtime.version.to_string(), "3.10.0");
        assert_eq!(job.files[0].name, "file0.code");
        assert_eq!(job.stdin, b"\n");
        assert!(job.compile.is_none());
        assert_eq!(job.run.wall_timeout_ms, 3000);
    }

    #[test]
    fn limits_resolve_through_overrides() {
        let mut env = LimitOverrideTable::new();
        env.insert(
            "c++".to_owned(),
            BTreeMap::from([("max_process_count".to_owned(), 128)]),
        );
        env.insert(
            "zig".to_owned(),
            BTreeMap::from([("compile_timeout".to_owned(), 0)]),
        );
        let body = json!({"language":"zig","version":"*","files":[{"content":"x"}]});
        let job = validate(&body, &runtimes(), &GlobalLimits::default(), &env).unwrap();
        assert_eq!(
            job.compile.unwrap().wall_timeout_ms,
            15000,
            "0 override is ignored, package wins"
        );
        let body = json!({"language":"c++","version":"*","files":[{"content":"x"}],"compile_timeout":20000});
        assert_eq!(
            validate(&body, &runtimes(), &GlobalLimits::default(), &env)
                .unwrap_err()
                .0,
            "compile_timeout cannot exceed the configured limit of 10000"
        );
        let body =
            json!({"language":"c++","version":"*","files":[{"content":"x"}],"run_memory_limit":-5});
        let uncapped = GlobalLimits {
            run_memory_limit: -1,
            ..GlobalLimits::default()
        };
        let job = validate(&body, &runtimes(), &uncapped, &env).unwrap();
        assert_eq!(job.run.max_processes, 128);
        assert_eq!(
            job.run.memory_bytes, None,
            "no cap: a negative request means no limit"
        );
        assert_eq!(
            validate(&body, &runtimes(), &GlobalLimits::default(), &env)
                .unwrap_err()
                .0,
            "run_memory_limit must be non-negative"
        );
        let body =
            json!({"language":"c++","version":"*","files":[{"content":"x"}],"run_memory_limit":-1});
        let job = validate(&body, &runtimes(), &GlobalLimits::default(), &env).unwrap();
        assert_eq!(
            job.run.memory_bytes,
            Some(512 << 20),
            "-1: the configured limit"
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(normalize_file_name("/a/./b//c").unwrap(), "a/b/c");
        assert_eq!(normalize_file_name("a/../b").unwrap(), "b");
        assert!(
            normalize_file_name("../x")
                .unwrap_err()
                .0
                .contains("tries to escape parent directory")
        );
        assert!(normalize_file_name("a/..").is_err());
        let err = check(
            &json!({"language":"python","version":"*","files":[{"content":"x"},{"name":"a/../../etc","content":"x"}]}),
        );
        assert_eq!(
            err.unwrap_err(),
            "File path \"a/../../etc\" tries to escape parent directory"
        );
    }

    #[test]
    fn many_files_are_checked_in_one_pass_and_bounded() {
        let body = |files: Vec<Value>| json!({"language":"python","version":"*","files": files});
        let named = |names: &[&str]| {
            body(
                names
                    .iter()
                    .map(|n| json!({"name": n, "content": ""}))
                    .collect(),
            )
        };
        assert_eq!(
            check(&named(&["a.py", "b/c.py", "b/d.py"]))
                .unwrap()
                .files
                .len(),
            3
        );
        assert_eq!(
            check(&named(&["a.py", "./a.py"])).unwrap_err(),
            "files[1].name \"a.py\" is used by another file"
        );
        for clash in [["b", "b/c.py"], ["b/c.py", "b"]] {
            assert!(
                check(&named(&clash))
                    .unwrap_err()
                    .ends_with("is both a file and a directory of another file"),
                "{clash:?}"
            );
        }
        // 70,000 empty files (what fits in a 1 MiB body): refused at the bound, quickly.
        let many: Vec<Value> = (0..70_000)
            .map(|i| json!({"name": format!("f{i}"), "content": ""}))
            .collect();
        let many = body(many);
        let started = std::time::Instant::now();
        let err = check(&many).unwrap_err();
        assert_eq!(
            err,
            format!(
                "files: a job may have at most {MAX_FILE_ENTRIES} files and directories; this \
                 request has 70000 files"
            )
        );
        // At the bound exactly, with one directory more, the directory is past it.
        let mut at: Vec<Value> = (0..MAX_FILE_ENTRIES - 1)
            .map(|i| json!({"name": format!("f{i}"), "content": ""}))
            .collect();
        at.push(json!({"name": "d/x", "content": ""}));
        assert!(
            check(&body(at))
                .unwrap_err()
                .ends_with(&format!("files[{}] is past that", MAX_FILE_ENTRIES - 1))
        );
        eprintln!("70,000 files refused in {:?}", started.elapsed());
        // Directories count: one file 5000 directories deep is refused too.
        let deep = vec!["d"; 5000].join("/") + "/x.py";
        assert!(
            check(&named(&[deep.as_str()]))
                .unwrap_err()
                .starts_with("files: a job may have")
        );
    }

    #[test]
    fn encodings() {
        let job = check(&json!({"language":"python","version":"*","files":[
            {"name":"m.py","content":"print(1)"},
            {"name":"a","content":"aGVs\nbG8=","encoding":"base64"},
            {"name":"b","content":"aGVsbG8","encoding":"base64"},
            {"name":"c","content":"68656c6c6f","encoding":"hex"},
            {"name":"d","content":"hi","encoding":"latin1"}
        ]}))
        .unwrap();
        let contents: Vec<&[u8]> = job.files.iter().map(|f| f.content.as_slice()).collect();
        assert_eq!(
            contents,
            [&b"print(1)"[..], b"hello", b"hello", b"hello", b"hi"]
        );
        let code: Vec<bool> = job.files.iter().map(|f| f.code).collect();
        assert_eq!(code, [true, false, false, false, true]);
        let err = check(
            &json!({"language":"python","version":"*","files":[{"content":"x"},{"content":"zz","encoding":"hex"}]}),
        );
        assert!(
            err.unwrap_err()
                .starts_with("files[1].content is not valid hex")
        );
        let only_b64 = json!({"language":"python","version":"*","files":[{"content":"eA==","encoding":"base64"}]});
        assert_eq!(
            check(&only_b64).unwrap_err(),
            "files must include at least one utf8 encoded file"
        );
        let file_lang = json!({"language":"file","version":"*","files":[{"content":"eA==","encoding":"base64"}]});
        assert!(check(&file_lang).unwrap().files[0].code);
    }
}
