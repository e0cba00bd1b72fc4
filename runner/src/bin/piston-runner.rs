//! `piston-runner`: run a command in the sandbox and print the result as JSON; `bench` prints
//! the sandbox's start-up cost next to a plain spawn. (Piston's jobs are the job layer's: the
//! `jobs` crate.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use runner::{Limits, ProcessSpec, Runner, RunnerConfig};

#[derive(Parser)]
#[command(
    name = "piston-runner",
    version,
    about = "Run untrusted code in the Piston sandbox"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Read-only layer (lower dir), top-most first; repeat.
    #[arg(long = "layer", required = true)]
    layers: Vec<PathBuf>,
    /// The piston-sandbox helper (default: next to this binary).
    #[arg(long, env = "PISTON_SANDBOX_BINARY")]
    sandbox_binary: Option<PathBuf>,
    #[arg(long, env = "PISTON_RUNNER_UID_MIN", default_value_t = RunnerConfig::default().uid_min)]
    uid_min: u32,
    #[arg(long, env = "PISTON_RUNNER_UID_MAX", default_value_t = RunnerConfig::default().uid_max)]
    uid_max: u32,
    /// Parent cgroup (relative to the hierarchy root); default: this process's cgroup.
    #[arg(long, env = "PISTON_CGROUP_PARENT")]
    cgroup_parent: Option<String>,
    /// Helpers kept pre-spawned in their cgroup (0 = spawn per stage).
    #[arg(long, default_value_t = RunnerConfig::default().warm_helpers)]
    warm_helpers: usize,
    /// Where job tmpfs mounts go.
    #[arg(long, default_value_os_t = RunnerConfig::default().work_dir)]
    work_dir: PathBuf,
}

#[derive(Args, Clone)]
struct LimitArgs {
    #[arg(long, default_value_t = Limits::default().wall_timeout_ms)]
    timeout: u64,
    #[arg(long, default_value_t = Limits::default().cpu_time_ms)]
    cpu_time: u64,
    /// Bytes; omit for no limit.
    #[arg(long)]
    memory_limit: Option<u64>,
    #[arg(long, default_value_t = Limits::default().max_processes)]
    max_processes: u64,
    #[arg(long, default_value_t = Limits::default().output_max_size)]
    output_max_size: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            wall_timeout_ms: self.timeout,
            cpu_time_ms: self.cpu_time,
            memory_bytes: self.memory_limit,
            max_processes: self.max_processes,
            output_max_size: self.output_max_size,
            ..Limits::default()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command (absolute path inside the sandbox) in a fresh sandbox.
    Exec {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        limits: LimitArgs,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// A command (default /bin/true) fully sandboxed vs bare namespaces vs a plain spawn.
    Bench {
        #[command(flatten)]
        common: Common,
        #[arg(short, default_value_t = 200)]
        n: usize,
        /// The command (absolute path; the same path must exist on the host and in the layers).
        #[arg(last = true)]
        argv: Vec<String>,
    },
}

fn runner(c: &Common) -> Result<Runner> {
    let mut cfg = RunnerConfig {
        sandbox_binary: c.sandbox_binary.clone(),
        uid_min: c.uid_min,
        uid_max: c.uid_max,
        gid_min: c.uid_min,
        work_dir: c.work_dir.clone(),
        warm_helpers: c.warm_helpers,
        ..RunnerConfig::default()
    };
    cfg.cgroup.parent = c.cgroup_parent.clone();
    Runner::new(cfg).context("setting up the runner")
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Exec {
            common,
            limits,
            argv,
        } => {
            let r = runner(&common)?;
            let spec = ProcessSpec {
                argv,
                env: vec![
                    ("PATH".into(), runner::DEFAULT_PATH.into()),
                    ("HOME".into(), "/tmp".into()),
                ],
                cwd: runner::BOX_DIR.into(),
                limits: limits.limits(),
            };
            let res = r.run_command(&common.layers, &[], &spec, b"")?;
            println!("{}", serde_json::to_string_pretty(&res)?);
        }
        Cmd::Bench { common, n, argv } => {
            let r = runner(&common)?;
            let argv = if argv.is_empty() {
                vec!["/bin/true".to_string()]
            } else {
                argv
            };
            // Warm-up (page cache, first cgroup creation, helper pool).
            runner::bench::compare(&r, &common.layers, &argv, 5)?;
            let (mut plain, mut ns, mut sbx) =
                runner::bench::compare(&r, &common.layers, &argv, n)?;
            let p = runner::bench::stats(&mut plain);
            let k = runner::bench::stats(&mut ns);
            let s = runner::bench::stats(&mut sbx);
            let ms = |us: u64| us as f64 / 1000.0;
            println!(
                "cgroup {:?}, layers {:?}, n = {n} (series interleaved)",
                r.cgroup_version(),
                common.layers
            );
            println!(
                "{:<40} {:>8} {:>8} {:>8} {:>8}",
                argv.join(" "),
                "mean ms",
                "median",
                "p95",
                "min"
            );
            for (name, st) in [
                ("plain spawn", p),
                ("clone3 + 6 namespaces (kernel cost)", k),
                ("full sandbox (job, cgroup, overlay...)", s),
            ] {
                println!(
                    "{name:<40} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                    ms(st.mean_us),
                    ms(st.median_us),
                    ms(st.p95_us),
                    ms(st.min_us)
                );
            }
            let d = |a: u64, b: u64| ms(a) - ms(b);
            println!(
                "full - plain: median {:+.3} ms (x{:.2}), p95 {:+.3} ms",
                d(s.median_us, p.median_us),
                s.median_us as f64 / p.median_us.max(1) as f64,
                d(s.p95_us, p.p95_us)
            );
            println!(
                "full - namespaces: median {:+.3} ms, p95 {:+.3} ms",
                d(s.median_us, k.median_us),
                d(s.p95_us, k.p95_us)
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    cli_support::init_tracing();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let runner_error = e
                .chain()
                .find_map(|c| c.downcast_ref::<runner::RunnerError>());
            let hint = match runner_error {
                Some(runner::RunnerError::NotRoot) => {
                    Some("run as root (sudo), the sandbox mounts and creates namespaces")
                }
                Some(runner::RunnerError::HelperMissing { .. }) => {
                    Some("build it with `cargo build -p runner` or pass --sandbox-binary")
                }
                _ => None,
            };
            cli_support::report(&*e, hint);
            cli_support::exit_code(runner_error.is_some())
        }
    }
}
