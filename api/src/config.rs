//! Server configuration: one path, `defaults < TOML file < PISTON_* environment < command line`.
//!
//! Every option has one name used everywhere: `run_timeout` in the TOML file, `PISTON_RUN_TIMEOUT` in
//! the environment, `--set run_timeout=…` on the command line. Values from every source go through
//! the same parser, so an invalid value is refused the same way wherever it comes from, naming the
//! option, the source and the reason. The options and their meaning are listed in `api/CONFIG.md`
//! (a unit test checks it against [`OPTIONS`] and `Config::default()`). The sandbox defaults
//! are the runner's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The limit names accepted in `limit_overrides` (Piston's).
pub use ppman::schema::LIMIT_KEYS;

/// Logging verbosity, Piston's names (plus `TRACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::None => "off",
        }
    }
}

/// Global limits, in Piston's units (milliseconds, bytes); `-1` memory means no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalLimits {
    pub compile_timeout: i64,
    pub run_timeout: i64,
    pub compile_cpu_time: i64,
    pub run_cpu_time: i64,
    pub compile_memory_limit: i64,
    pub run_memory_limit: i64,
    pub output_max_size: i64,
    pub max_process_count: i64,
    pub max_open_files: i64,
    pub max_file_size: i64,
}

impl GlobalLimits {
    /// The value of a limit by its Piston key.
    pub fn get(&self, key: &str) -> Option<i64> {
        Some(match key {
            "compile_timeout" => self.compile_timeout,
            "run_timeout" => self.run_timeout,
            "compile_cpu_time" => self.compile_cpu_time,
            "run_cpu_time" => self.run_cpu_time,
            "compile_memory_limit" => self.compile_memory_limit,
            "run_memory_limit" => self.run_memory_limit,
            "output_max_size" => self.output_max_size,
            "max_process_count" => self.max_process_count,
            "max_open_files" => self.max_open_files,
            "max_file_size" => self.max_file_size,
            _ => return None,
        })
    }

    fn slot(&mut self, key: &str) -> Option<&mut i64> {
        Some(match key {
            "compile_timeout" => &mut self.compile_timeout,
            "run_timeout" => &mut self.run_timeout,
            "compile_cpu_time" => &mut self.compile_cpu_time,
            "run_cpu_time" => &mut self.run_cpu_time,
            "compile_memory_limit" => &mut self.compile_memory_limit,
            "run_memory_limit" => &mut self.run_memory_limit,
            "output_max_size" => &mut self.output_max_size,
            "max_process_count" => &mut self.max_process_count,
            "max_open_files" => &mut self.max_open_files,
            "max_file_size" => &mut self.max_file_size,
            _ => return None,
        })
    }
}

impl Default for GlobalLimits {
    /// Piston's defaults, as the job layer and the runner define them: [`jobs::compile_limits`]
    /// and [`runner::Limits::piston_run`] (the limits a stage does not name are the run stage's).
    fn default() -> Self {
        let compile = jobs::compile_limits();
        let run = runner::Limits::piston_run();
        let memory = |bytes: Option<u64>| bytes.map_or(-1, piston_value);
        Self {
            compile_timeout: piston_value(compile.wall_timeout_ms),
            run_timeout: piston_value(run.wall_timeout_ms),
            compile_cpu_time: piston_value(compile.cpu_time_ms),
            run_cpu_time: piston_value(run.cpu_time_ms),
            compile_memory_limit: memory(compile.memory_bytes),
            run_memory_limit: memory(run.memory_bytes),
            output_max_size: piston_value(run.output_max_size),
            max_process_count: piston_value(run.max_processes),
            max_open_files: piston_value(run.max_open_files),
            max_file_size: piston_value(run.max_file_size),
        }
    }
}

/// A runner limit as a Piston value (which are signed).
fn piston_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `PISTON_LIMIT_OVERRIDES`: language → limit key → value.
pub type LimitOverrideTable = BTreeMap<String, BTreeMap<String, i64>>;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the server listens. Loopback by default: the API installs and removes packages and
    /// has no authentication (like Piston), so it must only be reachable from a trusted proxy or
    /// backend; set `0.0.0.0:2000` deliberately, behind such a proxy.
    pub bind_address: SocketAddr,
    /// ppman's data directory (packages, images, mounts, repository indexes).
    pub data_directory: PathBuf,
    pub log_level: LogLevel,
    pub limits: GlobalLimits,
    pub limit_overrides: LimitOverrideTable,
    /// Whether jobs run without network access.
    pub disable_networking: bool,
    /// Jobs running at once; `None` ("auto"): sized from the host, see [`Config::concurrency`].
    pub max_concurrent_jobs: Option<usize>,
    /// Jobs waiting for a slot; past this, requests get 503.
    pub max_queued_jobs: usize,
    /// Largest accepted request body, bytes.
    pub max_body_size: usize,
    /// How long a request body may take to arrive, milliseconds (then 408).
    pub body_timeout: u64,
    /// How long to wait for running jobs on shutdown, milliseconds.
    pub shutdown_timeout: u64,
    /// Sandbox user and group id ranges.
    pub runner_uid_min: u32,
    pub runner_uid_max: u32,
    pub runner_gid_min: u32,
    pub runner_gid_max: u32,
    /// Name of the cgroup directory that groups this server's job cgroups. Servers sharing a
    /// host need distinct names: each removes leftover job cgroups under its own at start-up.
    pub runner_cgroup_name: String,
    /// The CPU one job may use, percent of one CPU (0 = no cap).
    pub runner_cpu_max_percent: u32,
    /// The memory all jobs together may use, percent of the host's (0 = no cap).
    pub runner_jobs_memory_percent: u32,
    /// Processes and threads of all jobs together (0 = no cap).
    pub runner_jobs_max_processes: u64,
    /// Where job directories live (host side). Also swept of leftovers at start-up.
    pub runner_work_directory: PathBuf,
    /// Repository URL to register when ppman has none configured (Piston's `PISTON_REPO_URL`).
    pub repo_url: Option<String>,
    /// The minisign public key of `repo_url` (base64 or the text of a `.pub` file): required,
    /// since ppman only trusts signed indexes.
    pub repo_key: Option<String>,
    /// `Origin`s whose pages may open the WebSocket; a request with another `Origin` is refused
    /// (403). Clients that are not browsers send none and are not affected.
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    /// Piston's defaults, but loopback; the sandbox's are the runner's
    /// ([`runner::RunnerConfig::default`]), its gid range as large as its uid range.
    fn default() -> Self {
        let runner = runner::RunnerConfig::default();
        Self {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 2000)),
            data_directory: PathBuf::from("/var/lib/piston"),
            log_level: LogLevel::Info,
            limits: GlobalLimits::default(),
            limit_overrides: BTreeMap::new(),
            disable_networking: true,
            max_concurrent_jobs: None,
            max_queued_jobs: 256,
            max_body_size: 1 << 20,
            body_timeout: 10_000,
            shutdown_timeout: 10_000,
            runner_uid_min: runner.uid_min,
            runner_uid_max: runner.uid_max,
            runner_gid_min: runner.gid_min,
            runner_gid_max: runner.gid_min + (runner.uid_max - runner.uid_min),
            runner_cgroup_name: runner.cgroup.name,
            runner_cpu_max_percent: runner.cgroup.cpu_max_percent,
            runner_jobs_memory_percent: runner.cgroup.jobs_memory_percent,
            runner_jobs_max_processes: runner.cgroup.jobs_max_processes,
            runner_work_directory: runner.work_dir,
            repo_url: None,
            repo_key: None,
            allowed_origins: Vec::new(),
        }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env(String),
    CommandLine,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "config file {}", path.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {option} (from {source_name}): {reason}")]
    Invalid {
        option: String,
        source_name: Source,
        value: String,
        reason: String,
    },
    #[error("unknown option {option:?} (from {source_name}); known options: {known}")]
    Unknown {
        option: String,
        source_name: Source,
        known: String,
    },
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// One documented option.
pub struct OptionDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every option, in the order of `CONFIG.md`.
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "bind_address",
        default: "127.0.0.1:2000",
        doc: "address:port to listen on (loopback: the API can install packages and has no authentication)",
    },
    OptionDoc {
        name: "data_directory",
        default: "/var/lib/piston",
        doc: "ppman data directory (shared with the ppman command)",
    },
    OptionDoc {
        name: "log_level",
        default: "INFO",
        doc: "TRACE, DEBUG, INFO, WARN, ERROR or NONE (RUST_LOG, when set, wins)",
    },
    OptionDoc {
        name: "compile_timeout",
        default: "10000",
        doc: "compile wall-clock limit, ms (> 0)",
    },
    OptionDoc {
        name: "run_timeout",
        default: "3000",
        doc: "run wall-clock limit, ms (> 0)",
    },
    OptionDoc {
        name: "compile_cpu_time",
        default: "10000",
        doc: "compile CPU-time limit, ms (> 0)",
    },
    OptionDoc {
        name: "run_cpu_time",
        default: "3000",
        doc: "run CPU-time limit, ms (> 0)",
    },
    OptionDoc {
        name: "compile_memory_limit",
        default: "1073741824",
        doc: "compile memory limit, bytes (> 0, or -1 for none)",
    },
    OptionDoc {
        name: "run_memory_limit",
        default: "536870912",
        doc: "run memory limit, bytes (> 0, or -1 for none)",
    },
    OptionDoc {
        name: "output_max_size",
        default: "1024",
        doc: "bytes kept per output stream and stage (> 0); also enforced on the WebSocket",
    },
    OptionDoc {
        name: "max_process_count",
        default: "64",
        doc: "processes per job (> 0)",
    },
    OptionDoc {
        name: "max_open_files",
        default: "2048",
        doc: "open files per process (> 0)",
    },
    OptionDoc {
        name: "max_file_size",
        default: "10000000",
        doc: "largest file a job may write, bytes (> 0)",
    },
    OptionDoc {
        name: "limit_overrides",
        default: "{}",
        doc: "JSON (or a TOML table): {\"<language>\": {\"<limit>\": value}}",
    },
    OptionDoc {
        name: "disable_networking",
        default: "true",
        doc: "jobs get no network (true/false, 1/0, yes/no)",
    },
    OptionDoc {
        name: "max_concurrent_jobs",
        default: "auto",
        doc: "jobs running at once (> 0), or auto: sized from the host's CPUs and memory",
    },
    OptionDoc {
        name: "max_queued_jobs",
        default: "256",
        doc: "jobs waiting for a slot before 503 (>= 0)",
    },
    OptionDoc {
        name: "max_body_size",
        default: "1048576",
        doc: "largest request body, bytes, before 413 (> 0)",
    },
    OptionDoc {
        name: "body_timeout",
        default: "10000",
        doc: "ms a request body may take to arrive, before 408 (> 0)",
    },
    OptionDoc {
        name: "shutdown_timeout",
        default: "10000",
        doc: "ms to let running jobs finish after SIGTERM",
    },
    OptionDoc {
        name: "runner_uid_min",
        default: "1990000001",
        doc: "first sandbox user id",
    },
    OptionDoc {
        name: "runner_uid_max",
        default: "1990000500",
        doc: "last sandbox user id",
    },
    OptionDoc {
        name: "runner_gid_min",
        default: "1990000001",
        doc: "first sandbox group id",
    },
    OptionDoc {
        name: "runner_gid_max",
        default: "1990000500",
        doc: "last sandbox group id",
    },
    OptionDoc {
        name: "runner_cgroup_name",
        default: "piston-runner",
        doc: "cgroup directory grouping this server's jobs (distinct per server on a host)",
    },
    OptionDoc {
        name: "runner_cpu_max_percent",
        default: "100",
        doc: "CPU one job may use, percent of one CPU (0 = no cap)",
    },
    OptionDoc {
        name: "runner_jobs_memory_percent",
        default: "75",
        doc: "memory all jobs together may use, percent of the host's (0 = no cap)",
    },
    OptionDoc {
        name: "runner_jobs_max_processes",
        default: "8192",
        doc: "processes and threads of all jobs together (0 = no cap)",
    },
    OptionDoc {
        name: "runner_work_directory",
        default: "/run/piston-runner",
        doc: "host directory of job directories (distinct per server on a host)",
    },
    OptionDoc {
        name: "repo_url",
        default: "(none)",
        doc: "index URL registered as repository `default` when ppman has none",
    },
    OptionDoc {
        name: "repo_key",
        default: "(none)",
        doc: "minisign public key of repo_url (needed to register it)",
    },
    OptionDoc {
        name: "allowed_origins",
        default: "(none)",
        doc: "comma-separated Origins whose web pages may open the WebSocket",
    },
];

/// The environment variable of an option.
pub fn env_name(option: &str) -> String {
    format!("PISTON_{}", option.to_ascii_uppercase())
}

fn parse_int(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| "must be an integer".to_owned())
}

fn positive(value: &str, unit: &str) -> Result<i64, String> {
    match parse_int(value)? {
        n if n > 0 => Ok(n),
        _ => Err(format!("must be a positive number of {unit}")),
    }
}

fn memory(value: &str) -> Result<i64, String> {
    match parse_int(value)? {
        -1 => Ok(-1),
        n if n > 0 => Ok(n),
        _ => Err("must be a positive number of bytes, or -1 for no limit".to_owned()),
    }
}

/// Parses one limit by its Piston key (shared by the global options and `limit_overrides`).
pub fn parse_limit(key: &str, value: &str) -> Result<i64, String> {
    match key {
        "compile_timeout" | "run_timeout" | "compile_cpu_time" | "run_cpu_time" => {
            positive(value, "milliseconds")
        }
        "compile_memory_limit" | "run_memory_limit" => memory(value),
        "output_max_size" | "max_file_size" => positive(value, "bytes"),
        "max_process_count" | "max_open_files" => positive(value, "processes or files"),
        _ => Err(format!("unknown limit; known: {}", LIMIT_KEYS.join(", "))),
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

fn parse_u32(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "must be an integer from 0 to 4294967295".to_owned())
}

fn parse_overrides(value: &str) -> Result<LimitOverrideTable, String> {
    let json: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| format!("must be a JSON object of objects: {e}"))?;
    let serde_json::Value::Object(languages) = json else {
        return Err("must be a JSON object: {\"<language>\": {\"<limit>\": value}}".to_owned());
    };
    let mut table = LimitOverrideTable::new();
    for (language, limits) in languages {
        let serde_json::Value::Object(limits) = limits else {
            return Err(format!("{language}: must be an object of limits"));
        };
        let mut parsed = BTreeMap::new();
        for (key, raw) in limits {
            if !LIMIT_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "{language}.{key}: unknown limit; known: {}",
                    LIMIT_KEYS.join(", ")
                ));
            }
            let text = match &raw {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let n =
                parse_limit(&key, &text).map_err(|reason| format!("{language}.{key}: {reason}"))?;
            parsed.insert(key, n);
        }
        table.insert(language, parsed);
    }
    Ok(table)
}

impl Config {
    /// Sets option `name` from its text form.
    pub fn set(&mut self, name: &str, value: &str, source: &Source) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            option: match source {
                Source::Env(var) => var.clone(),
                _ => name.to_owned(),
            },
            source_name: source.clone(),
            value: value.to_owned(),
            reason,
        };
        if let Some(slot) = self.limits.slot(name) {
            *slot = parse_limit(name, value).map_err(invalid)?;
            return Ok(());
        }
        match name {
            "bind_address" => {
                self.bind_address = value.trim().parse().map_err(|_| {
                    invalid("must be address:port, e.g. 127.0.0.1:2000 or [::1]:2000".to_owned())
                })?;
            }
            "data_directory" => {
                if value.trim().is_empty() {
                    return Err(invalid("must be a directory path".to_owned()));
                }
                self.data_directory = PathBuf::from(value.trim());
            }
            "log_level" => {
                self.log_level = match value.trim().to_ascii_uppercase().as_str() {
                    "TRACE" => LogLevel::Trace,
                    "DEBUG" => LogLevel::Debug,
                    "INFO" => LogLevel::Info,
                    "WARN" => LogLevel::Warn,
                    "ERROR" => LogLevel::Error,
                    "NONE" => LogLevel::None,
                    _ => {
                        return Err(invalid(
                            "must be one of TRACE, DEBUG, INFO, WARN, ERROR, NONE".to_owned(),
                        ));
                    }
                };
            }
            "limit_overrides" => self.limit_overrides = parse_overrides(value).map_err(invalid)?,
            "disable_networking" => {
                self.disable_networking = parse_bool(value).map_err(invalid)?;
                if !self.disable_networking {
                    // Refused rather than ignored: an operator who asks for network must not
                    // believe jobs have it (or that they do not, should it ever be shared).
                    return Err(invalid(
                        "jobs cannot have network: each runs in an empty network namespace \
                         (sharing the host's would expose this API and every loopback service \
                         to them); remove the option or set it to true"
                            .to_owned(),
                    ));
                }
            }
            "max_concurrent_jobs" => {
                self.max_concurrent_jobs = if value.trim().eq_ignore_ascii_case("auto") {
                    None
                } else {
                    let jobs = positive(value, "jobs").map_err(|_| {
                        invalid("must be a positive number of jobs, or auto".to_owned())
                    })?;
                    Some(jobs as usize)
                };
            }
            "max_queued_jobs" => {
                self.max_queued_jobs = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("must be a non-negative integer".to_owned()))?;
            }
            "max_body_size" => {
                self.max_body_size = positive(value, "bytes").map_err(invalid)? as usize;
            }
            "body_timeout" => {
                self.body_timeout = positive(value, "milliseconds").map_err(invalid)? as u64;
            }
            "shutdown_timeout" => {
                self.shutdown_timeout = value.trim().parse().map_err(|_| {
                    invalid("must be a non-negative number of milliseconds".to_owned())
                })?;
            }
            "runner_uid_min" => self.runner_uid_min = parse_u32(value).map_err(invalid)?,
            "runner_uid_max" => self.runner_uid_max = parse_u32(value).map_err(invalid)?,
            "runner_gid_min" => self.runner_gid_min = parse_u32(value).map_err(invalid)?,
            "runner_gid_max" => self.runner_gid_max = parse_u32(value).map_err(invalid)?,
            "runner_cpu_max_percent" => {
                self.runner_cpu_max_percent = parse_u32(value).map_err(invalid)?;
            }
            "runner_jobs_memory_percent" => match parse_u32(value) {
                Ok(n) if n <= 100 => self.runner_jobs_memory_percent = n,
                _ => return Err(invalid("must be a percentage from 0 to 100".to_owned())),
            },
            "runner_jobs_max_processes" => {
                self.runner_jobs_max_processes = value.trim().parse().map_err(|_| {
                    invalid("must be a non-negative number of processes".to_owned())
                })?;
            }
            "runner_cgroup_name" => {
                let name = value.trim();
                if name.is_empty()
                    || name.starts_with('.')
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return Err(invalid(
                        "must be a non-empty name of letters, digits, '-', '_' and '.'".to_owned(),
                    ));
                }
                self.runner_cgroup_name = name.to_owned();
            }
            "runner_work_directory" => {
                let dir = PathBuf::from(value.trim());
                if !dir.is_absolute() {
                    return Err(invalid("must be an absolute path".to_owned()));
                }
                self.runner_work_directory = dir;
            }
            "allowed_origins" => {
                self.allowed_origins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = self
                    .allowed_origins
                    .iter()
                    .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
                {
                    return Err(invalid(format!(
                        "{bad:?} is not an origin: use e.g. https://judge.example.org"
                    )));
                }
            }
            "repo_key" => {
                let key = value.trim();
                if key.is_empty() {
                    return Err(invalid("must be a minisign public key".to_owned()));
                }
                self.repo_key = Some(key.to_owned());
            }
            "repo_url" => {
                let url = value.trim();
                if !(url.starts_with("http://")
                    || url.starts_with("https://")
                    || url.starts_with("file://")
                    || url.starts_with('/'))
                {
                    return Err(invalid(
                        "must be an http://, https:// or file:// URL or an absolute path"
                            .to_owned(),
                    ));
                }
                self.repo_url = Some(url.to_owned());
            }
            _ => {
                return Err(ConfigError::Unknown {
                    option: name.to_owned(),
                    source_name: source.clone(),
                    known: OPTIONS
                        .iter()
                        .map(|o| o.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    /// Applies a TOML document (option names as keys; `limit_overrides` may be a table).
    pub fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let source = Source::File(path.to_owned());
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Table(t) => serde_json::to_string(&t).unwrap_or_default(),
                // A list option (`allowed_origins = ["https://a", "https://b"]`).
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            self.set(&key, &text, &source)?;
        }
        Ok(())
    }

    /// Applies `PISTON_<OPTION>` variables from `env` (and `PORT`, which Piston honours for the
    /// default bind address). `PISTON_CONFIG` and unknown `PISTON_*` names are left alone.
    pub fn apply_env<I>(&mut self, env: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        if let Some(port) = env.get("PORT")
            && !env.contains_key("PISTON_BIND_ADDRESS")
        {
            let address = format!("{}:{}", self.bind_address.ip(), port.trim());
            self.set("bind_address", &address, &Source::Env("PORT".to_owned()))?;
        }
        for option in OPTIONS {
            let var = env_name(option.name);
            if let Some(value) = env.get(&var) {
                self.set(option.name, value, &Source::Env(var.clone()))?;
            }
        }
        Ok(())
    }

    /// Checks relations between options.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.runner_uid_min > self.runner_uid_max {
            return Err(ConfigError::Inconsistent(format!(
                "runner_uid_min ({}) is greater than runner_uid_max ({})",
                self.runner_uid_min, self.runner_uid_max
            )));
        }
        if self.runner_gid_min > self.runner_gid_max {
            return Err(ConfigError::Inconsistent(format!(
                "runner_gid_min ({}) is greater than runner_gid_max ({})",
                self.runner_gid_min, self.runner_gid_max
            )));
        }
        let uids = u64::from(self.runner_uid_max - self.runner_uid_min) + 1;
        let gids = u64::from(self.runner_gid_max - self.runner_gid_min) + 1;
        if gids < uids {
            return Err(ConfigError::Inconsistent(format!(
                "runner_gid_min..runner_gid_max holds {gids} gids, fewer than the {uids} uids of \
                 runner_uid_min..runner_uid_max: a job gets gid runner_gid_min + (uid - \
                 runner_uid_min)"
            )));
        }
        if let Some(jobs) = self.max_concurrent_jobs
            && uids < jobs as u64
        {
            return Err(ConfigError::Inconsistent(format!(
                "runner_uid_min..runner_uid_max holds {uids} uids, fewer than \
                 max_concurrent_jobs ({jobs}): every running job needs a uid of its own; widen \
                 the range or lower max_concurrent_jobs"
            )));
        }
        Ok(())
    }

    /// Jobs that run at once: `max_concurrent_jobs`, or when it is `auto` four per CPU (each
    /// job may use one: more would share the cores and their wall-clock limits would fire), no
    /// more than fit at their full run memory limit into the memory all jobs share
    /// (`jobs_memory`, so a job under its own limit is not killed for its neighbours'), no more
    /// than there are sandbox uids, and at least one.
    pub fn concurrency(&self, cpus: usize, jobs_memory: Option<u64>) -> usize {
        if let Some(jobs) = self.max_concurrent_jobs {
            return jobs;
        }
        let uids = (self.runner_uid_max - self.runner_uid_min) as usize + 1;
        let by_memory = match (jobs_memory, u64::try_from(self.limits.run_memory_limit)) {
            (Some(all), Ok(each)) if each > 0 => usize::try_from(all / each).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        (4 * cpus.max(1)).min(by_memory).min(uids).max(1)
    }

    /// Builds the configuration from every source: defaults, then the TOML file (`file`, else
    /// `PISTON_CONFIG` from `env`), then `env`, then the command-line `overrides` (`name=value`).
    pub fn load<I>(
        file: Option<&Path>,
        env: I,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut config = Self::default();
        let from_env = env
            .iter()
            .find(|(k, _)| k == "PISTON_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            config.apply_toml(&text, &path)?;
        }
        config.apply_env(env)?;
        for (name, value) in overrides {
            config.set(name, value, &Source::CommandLine)?;
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_piston_s_but_loopback() {
        let c = Config::load(None, env(&[]), &[]).unwrap();
        assert_eq!(c.bind_address.to_string(), "127.0.0.1:2000");
        assert_eq!(c.limits.run_timeout, 3000);
        assert_eq!(c.limits.max_open_files, 2048);
        assert!(c.disable_networking);
    }

    #[test]
    fn precedence_file_env_cli() {
        let dir = std::env::temp_dir().join(format!("api-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("piston.toml");
        std::fs::write(
            &path,
            "run_timeout = 1000\ncompile_timeout = 2000\nlog_level = \"debug\"\n[limit_overrides.\"c++\"]\nmax_process_count = 128\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("PISTON_COMPILE_TIMEOUT", "4000"),
                ("PISTON_RUN_CPU_TIME", "5000"),
            ]),
            &[("run_cpu_time".to_owned(), "6000".to_owned())],
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.limits.run_timeout, 1000);
        assert_eq!(c.limits.compile_timeout, 4000);
        assert_eq!(c.limits.run_cpu_time, 6000);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.limit_overrides["c++"]["max_process_count"], 128);
    }

    #[test]
    fn invalid_values_name_the_option_and_reason() {
        let err = Config::load(None, env(&[("PISTON_RUN_TIMEOUT", "soon")]), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("PISTON_RUN_TIMEOUT") && text.contains("must be an integer"),
            "{text}"
        );

        let err = Config::load(
            None,
            env(&[("PISTON_LIMIT_OVERRIDES", r#"{"c":{"colour":1}}"#)]),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("c.colour: unknown limit"), "{err}");

        let err = Config::load(None, env(&[("PISTON_RUN_MEMORY_LIMIT", "0")]), &[]).unwrap_err();
        assert!(err.to_string().contains("-1 for no limit"), "{err}");

        let err =
            Config::load(None, env(&[("PISTON_DISABLE_NETWORKING", "maybe")]), &[]).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");

        let err =
            Config::load(None, env(&[]), &[("colour".to_owned(), "1".to_owned())]).unwrap_err();
        assert!(matches!(err, ConfigError::Unknown { .. }));

        let err = Config::load(None, env(&[("PISTON_RUNNER_UID_MIN", "2000")]), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Inconsistent(_)));

        // Fewer uids than jobs at once (a fixed number; auto takes no more than the uids), or
        // fewer gids than uids.
        let small = [
            ("PISTON_RUNNER_UID_MIN", "2000"),
            ("PISTON_RUNNER_UID_MAX", "2009"),
            ("PISTON_RUNNER_GID_MIN", "2000"),
            ("PISTON_RUNNER_GID_MAX", "2009"),
        ];
        Config::load(None, env(&small), &[]).unwrap();
        let too_many = [&small[..], &[("PISTON_MAX_CONCURRENT_JOBS", "64")]].concat();
        let err = Config::load(None, env(&too_many), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds 10 uids, fewer than max_concurrent_jobs (64)"),
            "{err}"
        );
        let fits = [&small[..], &[("PISTON_MAX_CONCURRENT_JOBS", "10")]].concat();
        Config::load(None, env(&fits), &[]).unwrap();
        let gids = [&fits[..], &[("PISTON_RUNNER_GID_MAX", "2005")]].concat();
        let err = Config::load(None, env(&gids), &[]).unwrap_err().to_string();
        assert!(
            err.contains("holds 6 gids, fewer than the 10 uids"),
            "{err}"
        );
    }

    #[test]
    fn booleans_are_not_a_trap() {
        let c = Config::load(None, env(&[("PISTON_DISABLE_NETWORKING", "TRUE")]), &[]).unwrap();
        assert!(
            c.disable_networking,
            "unlike Piston, TRUE does not enable networking"
        );
        // Asking for network is refused, not ignored.
        let err = Config::load(None, env(&[("PISTON_DISABLE_NETWORKING", "false")]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PISTON_DISABLE_NETWORKING") && err.contains("empty network namespace"),
            "{err}"
        );
    }

    /// Rows of `api/CONFIG.md`'s option table: (option, default), a row of `a` / `b` split in two.
    fn documented_options() -> Vec<(String, String)> {
        let unquote = |cell: &str| cell.trim().trim_matches('`').to_owned();
        let mut rows = Vec::new();
        for line in include_str!("../CONFIG.md").lines() {
            let cells: Vec<&str> = line.splitn(4, '|').collect();
            if cells.len() < 4 || !cells[0].is_empty() || !cells[1].trim().starts_with('`') {
                continue;
            }
            let names: Vec<String> = cells[1].split(" / ").map(unquote).collect();
            let defaults: Vec<String> = cells[2].split(" / ").map(unquote).collect();
            assert_eq!(names.len(), defaults.len(), "CONFIG.md: {line}");
            rows.extend(names.into_iter().zip(defaults));
        }
        rows
    }

    /// The value of an option that has no default text.
    fn is_unset(config: &Config, option: &str) -> bool {
        match option {
            "repo_url" => config.repo_url.is_none(),
            "repo_key" => config.repo_key.is_none(),
            "allowed_origins" => config.allowed_origins.is_empty(),
            other => panic!("{other} has a default value"),
        }
    }

    #[test]
    fn auto_concurrency_is_sized_from_the_host() {
        let auto = Config::default();
        let gib = 1u64 << 30;
        // Four per CPU, unless the jobs' memory holds fewer at 512 MiB each.
        assert_eq!(auto.concurrency(2, Some(24 * gib)), 8);
        assert_eq!(auto.concurrency(16, Some(12 * gib)), 24);
        assert_eq!(auto.concurrency(16, None), 64);
        assert_eq!(auto.concurrency(1, Some(gib / 4)), 1, "at least one");
        // No more than the uids.
        let few_uids = Config {
            runner_uid_max: auto.runner_uid_min + 9,
            ..Config::default()
        };
        assert_eq!(few_uids.concurrency(64, None), 10);
        few_uids.validate().unwrap();
        // No memory limit per job: the memory does not bound it.
        let mut unlimited = Config::default();
        unlimited.limits.run_memory_limit = -1;
        assert_eq!(unlimited.concurrency(4, Some(gib)), 16);
        // A fixed number is taken as it is.
        let mut fixed = Config::default();
        fixed
            .set("max_concurrent_jobs", "3", &Source::CommandLine)
            .unwrap();
        assert_eq!(fixed.concurrency(64, Some(64 * gib)), 3);
        fixed
            .set("max_concurrent_jobs", "AUTO", &Source::CommandLine)
            .unwrap();
        assert_eq!(fixed.max_concurrent_jobs, None);
    }

    #[test]
    fn defaults_option_table_and_config_md_agree() {
        let defaults = Config::default();
        defaults.validate().unwrap();
        for option in OPTIONS {
            if option.default == "(none)" {
                assert!(is_unset(&defaults, option.name), "{}", option.name);
                continue;
            }
            // The documented default, parsed like any value, is the default.
            let mut parsed = Config::default();
            parsed
                .set(option.name, option.default, &Source::CommandLine)
                .unwrap_or_else(|e| panic!("{}: {e}", option.name));
            assert_eq!(
                parsed, defaults,
                "{}: the option table's default {:?} is not Config::default()'s",
                option.name, option.default
            );
        }
        let documented = documented_options();
        let names = |rows: &[(String, String)]| -> Vec<String> {
            rows.iter().map(|(name, _)| name.clone()).collect()
        };
        let table: Vec<(String, String)> = OPTIONS
            .iter()
            .map(|o| {
                let default = if o.default == "(none)" {
                    "none"
                } else {
                    o.default
                };
                (o.name.to_owned(), default.to_owned())
            })
            .collect();
        assert_eq!(
            names(&documented),
            names(&table),
            "CONFIG.md lists the options of OPTIONS, in its order"
        );
        for (doc, option) in documented.iter().zip(&table) {
            assert_eq!(doc, option, "CONFIG.md's default is the option table's");
        }
    }

    #[test]
    fn the_sandbox_defaults_are_the_runner_s() {
        let config = Config::default();
        let runner = runner::RunnerConfig::default();
        assert_eq!(
            (config.runner_uid_min, config.runner_uid_max),
            (runner.uid_min, runner.uid_max)
        );
        assert_eq!(config.runner_gid_min, runner.gid_min);
        assert_eq!(
            config.runner_gid_max - config.runner_gid_min,
            config.runner_uid_max - config.runner_uid_min
        );
        assert_eq!(config.runner_work_directory, runner.work_dir);
        assert_eq!(
            config.runner_cgroup_name,
            runner::CgroupConfig::default().name
        );
        let cgroup = runner::CgroupConfig::default();
        assert_eq!(config.runner_cpu_max_percent, cgroup.cpu_max_percent);
        assert_eq!(
            config.runner_jobs_memory_percent,
            cgroup.jobs_memory_percent
        );
        assert_eq!(config.runner_jobs_max_processes, cgroup.jobs_max_processes);
        let run = runner::Limits::piston_run();
        let compile = jobs::compile_limits();
        let limits = &config.limits;
        assert_eq!(limits.run_timeout as u64, run.wall_timeout_ms);
        assert_eq!(limits.compile_timeout as u64, compile.wall_timeout_ms);
        assert_eq!(limits.run_cpu_time as u64, run.cpu_time_ms);
        assert_eq!(limits.compile_cpu_time as u64, compile.cpu_time_ms);
        assert_eq!(limits.max_process_count as u64, run.max_processes);
        assert_eq!(limits.output_max_size as u64, run.output_max_size);
        // The limits the option table holds once serve both stages alike.
        for (c, r) in [
            (compile.max_processes, run.max_processes),
            (compile.max_open_files, run.max_open_files),
            (compile.max_file_size, run.max_file_size),
            (compile.output_max_size, run.output_max_size),
        ] {
            assert_eq!(c, r);
        }
    }

    #[test]
    fn port_sets_the_default_port() {
        let c = Config::load(None, env(&[("PORT", "3000")]), &[]).unwrap();
        assert_eq!(c.bind_address.to_string(), "127.0.0.1:3000");
        let c = Config::load(
            None,
            env(&[("PORT", "3000"), ("PISTON_BIND_ADDRESS", "0.0.0.0:2000")]),
            &[],
        )
        .unwrap();
        assert_eq!(c.bind_address.to_string(), "0.0.0.0:2000");
    }
}
