//! What the API server costs on top of running the program: latency of a Python `print(1)`
//! through `/api/v2/execute` next to the same installed Python run directly, throughput of a bash
//! `echo hi` through the API next to bare spawns of it and to the same job through the runner
//! library in this process (the sandbox without HTTP) at the same concurrency, and the server's
//! memory. Needs root, and a ppman data directory where python and bash are installed.
//!
//! ```sh
//! cargo build --release -p api -p runner --bins      # target/release/piston, piston-sandbox
//! cargo run --release -p api --example server-bench -- --data-directory DIR [-n 200]
//! cargo run --release -p api --example server-bench -- --server http://127.0.0.1:2000 [--pid PID]
//! ```
//!
//! Without `--server` it starts `target/release/piston` on a free loopback port with its own uid
//! range, cgroup name and work directory (so it does not disturb a server already running on the
//! host) and stops it with SIGTERM at the end.
//!
//! "Directly" means in the runtime's tree as ppman mounted it (the same images the sandbox
//! stacks), entered with `chroot(8)` and no sandbox, so the comparison is the sandbox and HTTP
//! overhead and not another interpreter. Series that are compared run interleaved (latency: sample by sample
//! in rotating order; throughput: alternating halves), so machine load hits them alike; figures
//! are ratios for that reason. The direct series include the exec of `chroot(8)` itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use serde_json::{Value, json};

/// Benchmark of the Piston API server against running the same programs directly.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// ppman data directory with python and bash installed (the server's data_directory).
    #[arg(
        long,
        value_name = "DIR",
        env = "PISTON_DATA_DIRECTORY",
        default_value = "/var/lib/piston"
    )]
    data_directory: PathBuf,
    /// Samples per latency series, and jobs per throughput cell.
    #[arg(short, default_value_t = 200)]
    n: usize,
    /// Bench this running server instead of starting one (its data directory must be
    /// --data-directory).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// With --server: the server's process id, for the memory figures.
    #[arg(long, requires = "server")]
    pid: Option<u32>,
    /// The server binary to start [default: target/release/piston, next to this example's
    /// directory].
    #[arg(long, value_name = "PATH")]
    piston: Option<PathBuf>,
    /// Concurrency levels of the throughput series.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Only load the server: -n bash `echo hi` jobs through the API at the first concurrency
    /// level, nothing else (e.g. under `perf record -a`), then print their rate and CPU.
    #[arg(long)]
    api_load_only: bool,
}

/// Unmeasured rounds before each series.
const WARMUP: usize = 5;
/// The environment of a spawn that is not a stage of a package (`/bin/true`, chroot(8)).
fn base_env() -> Vec<(String, String)> {
    jobs::JobsConfig::default().stage_env("")
}

fn main() -> std::process::ExitCode {
    match run(&Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            cli_support::report(&*error, None);
            cli_support::exit_code(false)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.n > 0, "-n must be at least 1");
    ensure!(
        rustix::process::geteuid().is_root(),
        "the bench needs root (chroot into the runtime trees; the server it starts mounts and \
         makes cgroups)"
    );

    let python = Runtime::find(&args.data_directory, "python")?;
    let bash = Runtime::find(&args.data_directory, "bash")?;

    let mut server = None;
    let (url, pid) = match &args.server {
        Some(url) => (url.trim_end_matches('/').to_owned(), args.pid),
        None => {
            let binary = match &args.piston {
                Some(p) => p.clone(),
                None => default_server_binary()?,
            };
            let s = Server::start(&binary, &args.data_directory)?;
            let started = (s.url.clone(), Some(s.pid()));
            server = Some(s);
            started
        }
    };
    let client = Client::new(&url);
    client.wait_ready(Duration::from_secs(60), server.as_mut())?;

    println!("$ {}", std::env::args().collect::<Vec<_>>().join(" "));
    match &server {
        Some(s) => println!("server: {} (pid {})", s.command_line, s.pid()),
        None => println!(
            "server: {url} (already running{})",
            pid.map_or(String::new(), |p| format!(", pid {p}"))
        ),
    }
    println!(
        "host: {} CPUs, load average {} at start",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load_average()
    );
    println!("python {}: {}", python.version, python.tree.display());
    println!("bash {}: {}", bash.version, bash.tree.display());

    // Memory right after start-up: give the helper pool a moment to fill.
    std::thread::sleep(Duration::from_secs(1));
    let idle = pid.map(Memory::of).transpose()?;

    if args.api_load_only {
        let c = args.concurrency.first().copied().unwrap_or(1);
        let api = || {
            client
                .execute(&bash, "main.sh", "echo hi", "hi\n")
                .map(drop)
        };
        let rate = load(c, args.n, &api);
        println!(
            "\nAPI only, bash `echo hi`, concurrency {c}: {} jobs, {} errors, {:.1} jobs/s, \
             {} of CPU per job (whole machine)",
            rate.ok,
            rate.errors,
            rate.per_second(),
            ms(rate.cpu_per_job())
        );
        if let Some(s) = server {
            s.stop()?;
        }
        return Ok(());
    }
    let latency = latency(&client, &python, args.n)?;
    let direct = DirectRunner::start()?;
    let throughput = args
        .concurrency
        .iter()
        .map(|&c| throughput(&client, &direct, &bash, c, args.n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(direct);

    // Memory after the load, once the background teardown of the last jobs is over.
    std::thread::sleep(Duration::from_secs(2));
    let loaded = pid.map(Memory::of).transpose()?;

    print_latency(&latency, &python, args.n);
    print_throughput(&throughput, args.n, latency.chroot_cost());
    match (pid, idle, loaded) {
        (Some(pid), Some(idle), Some(loaded)) => {
            let first = if server.is_some() {
                "after start-up"
            } else {
                "before the load"
            };
            print_memory(pid, [(first, &idle), ("after the load", &loaded)]);
        }
        _ => println!("\nmemory: skipped (the server is not ours; give --pid)"),
    }
    println!("\nload average {} at the end", load_average());

    if let Some(s) = server {
        s.stop()?;
    }
    Ok(())
}

// ---- the runtimes ---------------------------------------------------------------------------

/// An installed runtime as ppman mounted it.
struct Runtime {
    language: String,
    version: String,
    /// The whole stack's read-only tree (what the sandbox gets as its root).
    tree: PathBuf,
    /// The read-only layers of the stack, top-most first (what the API gives the runner).
    layers: Vec<PathBuf>,
    /// `/piston/packages/<name>/<version>` inside the tree.
    package_dir: String,
    /// The runner's environment of a stage of this runtime, before the package's exports.
    stage_env: Vec<(String, String)>,
    /// ... with them (what the run script gets), and the shell the run script is started with.
    package: jobs::PackageInfo,
}

impl Runtime {
    /// The highest installed version of the package providing `language`.
    fn find(data_dir: &Path, language: &str) -> anyhow::Result<Self> {
        ensure!(
            data_dir.join("ppman").is_dir(),
            "{} is not a ppman data directory (no ppman/ in it)",
            data_dir.display()
        );
        let pm = ppman::PackageManager::open(data_dir)
            .with_context(|| format!("cannot open ppman in {}", data_dir.display()))?;
        let installed = pm
            .installed()
            .with_context(|| format!("cannot list the packages in {}", data_dir.display()))?;
        let package = installed
            .into_iter()
            .filter(|p| p.entry.provides.iter().any(|l| l.language == language))
            .max_by(|a, b| a.entry.version.cmp(&b.entry.version))
            .with_context(|| {
                format!(
                    "no package providing {language} is installed in {}; install it with \
                     `ppman --data-dir {} install {language}`",
                    data_dir.display(),
                    data_dir.display()
                )
            })?;
        ensure!(
            package.tree.join("bin/bash").exists(),
            "{} is not mounted (run `ppman reconcile`)",
            package.tree.display()
        );
        let mut runtime = Self {
            language: language.to_owned(),
            version: package.entry.version.to_string(),
            tree: package.tree,
            layers: package.layers,
            package_dir: package.package_dir,
            stage_env: jobs::JobsConfig::default().stage_env(language),
            package: jobs::PackageInfo::default(),
        };
        runtime.package = runtime.package_info()?;
        Ok(runtime)
    }

    /// What the runner reads from this package (its `environment`'s exports, its scripts'
    /// shells), read the way the runner reads it.
    fn package_info(&self) -> anyhow::Result<jobs::PackageInfo> {
        let argv = jobs::package_info_command(&self.package_dir);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.chroot(&argv, &self.stage_env).output();
        let out = out.context("cannot read the package's environment")?;
        ensure!(
            out.status.success(),
            "reading the environment: {}",
            out.status
        );
        Ok(jobs::parse_package_info(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }

    /// `chroot <tree> ARGV` with exactly `env`.
    fn chroot(&self, argv: &[&str], env: &[(String, String)]) -> Command {
        let mut command = Command::new("chroot");
        command
            .arg(&self.tree)
            .args(argv)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs `chroot <tree> ARGV` with `env`, checks its stdout and returns how long it took.
    fn timed(
        &self,
        argv: &[&str],
        env: &[(String, String)],
        expected: &str,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = self
            .chroot(argv, env)
            .output()
            .with_context(|| format!("cannot run chroot {} {argv:?}", self.tree.display()))?;
        let took = start.elapsed();
        ensure!(
            out.status.success() && out.stdout == expected.as_bytes(),
            "chroot {} {argv:?}: {}, stdout {:?}, stderr {:?}",
            self.tree.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    }

    /// A program run directly in the tree, with the stage's base environment.
    fn run(&self, argv: &[&str], expected: &str) -> anyhow::Result<Duration> {
        self.timed(argv, &self.stage_env, expected)
    }

    /// The package's `run` script on `args` the way the runner starts a stage (its argv, in
    /// the package's environment), without the sandbox.
    fn run_script(&self, args: &[&str], expected: &str) -> anyhow::Result<Duration> {
        let argv = self.run_argv(args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // chroot(8) leaves the working directory at `/`.
        let env = self.package.run.env(&self.package.env, &args, "/");
        self.timed(&argv, &env, expected)
    }

    /// `code` as the code file `name` of this runtime: a job as the API hands it to the runner
    /// (Piston's default limits).
    fn job(&self, name: &str, code: &str) -> jobs::JobSpec {
        jobs::JobSpec {
            layers: self.layers.clone(),
            package_dir: PathBuf::from(&self.package_dir),
            language: self.language.clone(),
            files: vec![jobs::JobFile {
                name: name.into(),
                content: code.as_bytes().to_vec(),
                code: true,
            }],
            args: Vec::new(),
            stdin: Vec::new(),
            compile: None,
            run: runner::Limits::piston_run(),
        }
    }

    /// What the runner starts for the run stage on `args`: the shell on the `run` script, or the
    /// program of a plain `exec` script.
    fn run_argv(&self, args: &[&str]) -> Vec<String> {
        let script = format!("{}/run", self.package_dir);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.package.run.argv(&script, &args)
    }
}

// ---- the server -----------------------------------------------------------------------------

/// `target/release/piston`: this example is `target/release/examples/server-bench`.
fn default_server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("piston"))
        .context("this executable has no grandparent directory")?;
    ensure!(
        binary.is_file(),
        "{} does not exist; build it with `cargo build --release -p api -p runner --bins` or \
         give --piston",
        binary.display()
    );
    Ok(binary)
}

/// A `piston` server started for the bench, with its own uid range, cgroup and work directory.
/// Dropping it stops it.
struct Server {
    child: Option<Child>,
    url: String,
    command_line: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("piston-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let work = dir.path().join("work");
        std::fs::create_dir(&work).context("cannot create the work directory")?;
        let log = dir.path().join("piston.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free loopback port")?
            .port();
        let bind = format!("127.0.0.1:{port}");
        let settings = [
            ("runner_uid_min", "63001".to_owned()),
            ("runner_uid_max", "63100".into()),
            ("runner_gid_min", "63001".into()),
            ("runner_gid_max", "63100".into()),
            ("runner_cgroup_name", "piston-bench".into()),
            ("runner_work_directory", work.display().to_string()),
            ("max_concurrent_jobs", "32".into()),
        ];
        // Configured by this command line alone (it is printed with the results).
        let mut command = test_support::piston_command(binary, &bind, data_dir, &settings);
        let command_line = format!(
            "{} {}",
            binary.display(),
            command
                .get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("cannot create the server log")?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            url: format!("http://{bind}"),
            command_line,
            log,
            _dir: dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails with the end of the log when the server has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("the server was stopped");
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("the server exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then waits for the graceful shutdown (SIGKILL after 30 s).
    fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = terminate(&mut child)?;
        ensure!(
            status.success(),
            "the server exited with {status} after SIGTERM:\n{}",
            self.log_tail()
        );
        Ok(())
    }
}

/// SIGTERM, then up to 30 s for the graceful shutdown (SIGKILL after that).
fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    test_support::terminate(child, Duration::from_secs(30))
        .context("cannot stop the server")?
        .context("the server did not stop within 30 s of SIGTERM; killed")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(e) = terminate(&mut child)
        {
            eprintln!("warning: {e:#}");
        }
    }
}

// ---- the client -----------------------------------------------------------------------------

/// A blocking HTTP client of one server, shareable between threads (keep-alive connections).
struct Client {
    agent: ureq::Agent,
    url: String,
}

/// One job's figures.
struct Sample {
    /// Request sent to response read.
    round_trip: Duration,
    /// The run stage's `wall_time`, as the sandbox measured it.
    wall_time: Duration,
}

impl Client {
    fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(256)
            .max_idle_connections_per_host(256)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            agent,
            url: url.to_owned(),
        }
    }

    fn wait_ready(&self, limit: Duration, mut server: Option<&mut Server>) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = server.as_deref_mut() {
                s.check_alive()?;
            }
            if let Ok(r) = self.agent.get(format!("{}/healthz", self.url)).call()
                && r.status() == 200
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not answer /healthz within {limit:?}",
                self.url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /api/v2/runtimes`: how long a request without a job takes.
    fn runtimes(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut response = self
            .agent
            .get(format!("{}/api/v2/runtimes", self.url))
            .call()
            .context("GET /api/v2/runtimes")?;
        let status = response.status();
        let text = response.body_mut().read_to_string()?;
        let took = start.elapsed();
        ensure!(status == 200, "GET /api/v2/runtimes: {status} {text}");
        Ok(took)
    }

    /// Runs `code` through `/api/v2/execute` and checks the run stage printed `expected`.
    fn execute(
        &self,
        runtime: &Runtime,
        file: &str,
        code: &str,
        expected: &str,
    ) -> anyhow::Result<Sample> {
        let body = json!({
            "language": runtime.language,
            "version": runtime.version,
            "files": [{"name": file, "content": code}],
        })
        .to_string();
        let start = Instant::now();
        let mut response = self
            .agent
            .post(format!("{}/api/v2/execute", self.url))
            .header("content-type", "application/json")
            .send(&body)
            .context("POST /api/v2/execute")?;
        let status = response.status();
        let text = response.body_mut().read_to_string()?;
        let round_trip = start.elapsed();
        ensure!(status == 200, "POST /api/v2/execute: {status} {text}");
        let value: Value = serde_json::from_str(&text).context("the response is not JSON")?;
        let run = &value["run"];
        ensure!(
            run["code"] == 0 && run["stdout"] == expected,
            "{} {code:?} through the API: {run}",
            runtime.language
        );
        let wall_ms = run["wall_time"].as_f64().unwrap_or(0.0);
        Ok(Sample {
            round_trip,
            wall_time: Duration::from_secs_f64(wall_ms / 1000.0),
        })
    }
}

// ---- latency --------------------------------------------------------------------------------

struct Latency {
    api: Vec<Duration>,
    /// The run stage's wall time inside the sandbox, as the server reported it.
    api_wall: Vec<Duration>,
    direct: Vec<Duration>,
    run_script: Vec<Duration>,
    /// `GET /api/v2/runtimes`: the HTTP round trip alone.
    http: Vec<Duration>,
    /// `chroot / /bin/true` and `/bin/true`: what chroot(8) adds to the direct series.
    chroot_true: Vec<Duration>,
    true_: Vec<Duration>,
}

impl Latency {
    /// What `chroot(8)` adds to a spawn (p50).
    fn chroot_cost(&self) -> Duration {
        summary(&self.chroot_true)
            .p50
            .saturating_sub(summary(&self.true_).p50)
    }
}

/// Python `print(1)`: through the API, directly, and through the package's run script without a
/// sandbox, sample by sample in rotating order.
fn latency(client: &Client, python: &Runtime, n: usize) -> anyhow::Result<Latency> {
    let mut l = Latency {
        api: Vec::with_capacity(n),
        api_wall: Vec::with_capacity(n),
        direct: Vec::with_capacity(n),
        run_script: Vec::with_capacity(n),
        http: Vec::with_capacity(n),
        chroot_true: Vec::with_capacity(n),
        true_: Vec::with_capacity(n),
    };
    let code = "print(1)";
    for i in 0..WARMUP + n {
        let keep = i >= WARMUP;
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let s = client.execute(python, "main.py", code, "1\n")?;
                    if keep {
                        l.api.push(s.round_trip);
                        l.api_wall.push(s.wall_time);
                    }
                }
                1 => {
                    let d = python.run(&["/usr/bin/python3", "-c", code], "1\n")?;
                    if keep {
                        l.direct.push(d);
                    }
                }
                _ => {
                    let d = python.run_script(&["-c", code], "1\n")?;
                    if keep {
                        l.run_script.push(d);
                    }
                }
            }
        }
        let d = client.runtimes()?;
        let c = spawn(Command::new("chroot").args(["/", "/bin/true"]))?;
        let t = spawn(&mut Command::new("/bin/true"))?;
        if keep {
            l.http.push(d);
            l.chroot_true.push(c);
            l.true_.push(t);
        }
    }
    Ok(l)
}

/// How long `command` takes with the stage's environment; it must succeed.
fn spawn(command: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = command
        .env_clear()
        .envs(base_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    let took = start.elapsed();
    ensure!(status.success(), "{command:?}: {status}");
    Ok(took)
}

// ---- throughput -----------------------------------------------------------------------------

struct Throughput {
    concurrency: usize,
    api: Rate,
    bare: Rate,
    /// The same job through the runner library in this process: the sandbox without HTTP.
    sandbox: Rate,
}

/// Jobs done in a time, and the CPU the whole machine spent meanwhile.
#[derive(Default)]
struct Rate {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    cpu: Duration,
    first_error: Option<String>,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time of the whole machine per finished job (this bench's own threads included).
    fn cpu_per_job(&self) -> Duration {
        self.cpu / u32::try_from(self.ok.max(1)).unwrap_or(u32::MAX)
    }

    fn add(&mut self, other: Rate) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// `jobs` runs of `work` on `concurrency` threads.
fn load(concurrency: usize, jobs: usize, work: &(dyn Fn() -> anyhow::Result<()> + Sync)) -> Rate {
    let next = AtomicUsize::new(0);
    let cpu_before = busy_cpu();
    let start = Instant::now();
    let results: Vec<(usize, usize, Option<String>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let (mut ok, mut errors, mut first) = (0, 0, None);
                    while next.fetch_add(1, Ordering::Relaxed) < jobs {
                        match work() {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert_with(|| format!("{e:#}"));
                            }
                        }
                    }
                    (ok, errors, first)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or((0, 1, Some("a load thread panicked".into())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let cpu = busy_cpu().saturating_sub(cpu_before);
    let mut rate = Rate {
        elapsed,
        cpu,
        ..Rate::default()
    };
    for (ok, errors, first) in results {
        rate.ok += ok;
        rate.errors += errors;
        if rate.first_error.is_none() {
            rate.first_error = first;
        }
    }
    rate
}

/// CPU time every CPU of the machine has spent busy since boot (`/proc/stat`: user, nice,
/// system, irq, softirq, steal; clock ticks of 10 ms).
fn busy_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The runner library in this process, for the sandbox-only series: its own uids, cgroup and
/// work directory, apart from the server's. Its jobs are torn down when it is dropped, before
/// the directory.
struct DirectRunner {
    jobs: jobs::Jobs,
    _dir: tempfile::TempDir,
}

impl DirectRunner {
    fn start() -> anyhow::Result<DirectRunner> {
        let dir = tempfile::Builder::new()
            .prefix("piston-bench-direct-")
            .tempdir()
            .context("cannot create a work directory for the runner")?;
        let mut config = runner::RunnerConfig {
            uid_min: 62001,
            uid_max: 62100,
            gid_min: 62001,
            work_dir: dir.path().join("work"),
            ..runner::RunnerConfig::default()
        };
        config.cgroup.name = "piston-bench-direct".into();
        let runner = runner::Runner::new(config).context("cannot start the runner")?;
        Ok(DirectRunner {
            jobs: jobs::Jobs::new(runner, jobs::JobsConfig::default()),
            _dir: dir,
        })
    }
}

/// Bash `echo hi` through the API, bare, and through the runner library (no HTTP), `jobs` each,
/// in alternating halves.
fn throughput(
    client: &Client,
    direct: &DirectRunner,
    bash: &Runtime,
    concurrency: usize,
    jobs: usize,
) -> anyhow::Result<Throughput> {
    ensure!(concurrency > 0, "a concurrency level must be at least 1");
    let api = || client.execute(bash, "main.sh", "echo hi", "hi\n").map(drop);
    let bare = || bash.run(&["/bin/bash", "-c", "echo hi"], "hi\n").map(drop);
    let job = bash.job("main.sh", "echo hi");
    let sandbox = || {
        let r = direct.jobs.run(&job)?.run;
        ensure!(r.status.is_none() && r.stdout == "hi\n", "runner: {r:?}");
        Ok(())
    };
    for work in [
        &api as &(dyn Fn() -> anyhow::Result<()> + Sync),
        &bare,
        &sandbox,
    ] {
        load(concurrency, WARMUP.max(concurrency), work);
    }
    let mut t = Throughput {
        concurrency,
        api: Rate::default(),
        bare: Rate::default(),
        sandbox: Rate::default(),
    };
    let first_half = jobs / 2;
    for half in [first_half, jobs - first_half] {
        if half == 0 {
            continue;
        }
        t.bare.add(load(concurrency, half, &bare));
        t.sandbox.add(load(concurrency, half, &sandbox));
        t.api.add(load(concurrency, half, &api));
    }
    Ok(t)
}

// ---- memory ---------------------------------------------------------------------------------

/// Figures from `/proc/<pid>/status`, kB.
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
    /// VmRSS of every descendant (the pre-spawned sandbox helpers and jobs still running).
    descendants_kb: u64,
    descendants: usize,
}

impl Memory {
    fn of(pid: u32) -> anyhow::Result<Self> {
        let status = proc_status(pid)?;
        let field = |name: &str| {
            status
                .get(name)
                .copied()
                .with_context(|| format!("/proc/{pid}/status has no {name}"))
        };
        let (rss_kb, hwm_kb) = (field("VmRSS")?, field("VmHWM")?);
        let descendants = descendants(pid);
        let descendants_kb = descendants
            .iter()
            .filter_map(|&p| proc_status(p).ok()?.get("VmRSS").copied())
            .sum();
        Ok(Self {
            rss_kb,
            hwm_kb,
            descendants_kb,
            descendants: descendants.len(),
        })
    }
}

/// The `kB` fields of `/proc/<pid>/status`.
fn proc_status(pid: u32) -> anyhow::Result<HashMap<String, u64>> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let kb = value.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((name.to_owned(), kb))
        })
        .collect())
}

/// Every process below `pid`, from the parent ids in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

// ---- report ---------------------------------------------------------------------------------

struct Summary {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summary(samples: &[Duration]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let total: Duration = sorted.iter().sum();
    Summary {
        p50: runner::bench::percentile(&sorted, 0.50),
        p99: runner::bench::percentile(&sorted, 0.99),
        mean: total / sorted.len().max(1) as u32,
    }
}

/// `argv` as one would type it in a shell (single quotes where a word needs them).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| match jobs::is_plain_shell_word(w) {
            true => w.clone(),
            false => format!("'{}'", w.replace('\'', r"'\''")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `a - b`, signed.
fn diff_ms(a: Duration, b: Duration) -> String {
    format!("{:+.1} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::INFINITY }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn print_latency(l: &Latency, python: &Runtime, n: usize) {
    let (api, wall, direct, script, http) = (
        summary(&l.api),
        summary(&l.api_wall),
        summary(&l.direct),
        summary(&l.run_script),
        summary(&l.http),
    );
    let (chroot_true, true_) = (summary(&l.chroot_true), summary(&l.true_));
    let tree = python.tree.display();
    println!(
        "\n## Latency: Python `print(1)`, {n} samples per series, interleaved \
         ({WARMUP} warm-up rounds)\n"
    );
    println!("| series | p50 | p99 | mean |");
    println!("|---|---:|---:|---:|");
    println!(
        "| POST /api/v2/execute (HTTP round trip) | {} | {} | {} |",
        ms(api.p50),
        ms(api.p99),
        ms(api.mean)
    );
    println!(
        "| … of which the run stage inside the sandbox (`run.wall_time`) | {} | {} | {} |",
        ms(wall.p50),
        ms(wall.p99),
        ms(wall.mean)
    );
    println!(
        "| direct: `chroot {tree} /usr/bin/python3 -c 'print(1)'` | {} | {} | {} |",
        ms(direct.p50),
        ms(direct.p99),
        ms(direct.mean)
    );
    println!(
        "| direct through the package's run script as the runner starts it (`{}` in the package's environment, no sandbox) | {} | {} | {} |",
        shell_words(&python.run_argv(&["-c", "print(1)"])),
        ms(script.p50),
        ms(script.p99),
        ms(script.mean)
    );
    println!(
        "| GET /api/v2/runtimes (an HTTP round trip without a job) | {} | {} | {} |",
        ms(http.p50),
        ms(http.p99),
        ms(http.mean)
    );
    println!(
        "| `chroot / /bin/true` (chroot(8), part of every direct run) / `/bin/true` | {} / {} | {} / {} | {} / {} |",
        ms(chroot_true.p50),
        ms(true_.p50),
        ms(chroot_true.p99),
        ms(true_.p99),
        ms(chroot_true.mean),
        ms(true_.mean)
    );
    let r50 = ratio(api.p50.as_secs_f64(), direct.p50.as_secs_f64());
    let r99 = ratio(api.p99.as_secs_f64(), direct.p99.as_secs_f64());
    println!("\n| ratio API / direct | p50 | p99 | target |");
    println!("|---|---:|---:|---|");
    println!(
        "| Python `print(1)` | {r50:.2}× | {r99:.2}× | ≤ 1.25×: p50 {}, p99 {} |",
        verdict(r50 <= 1.25),
        verdict(r99 <= 1.25)
    );
    let cost = l.chroot_cost();
    println!(
        "| the same, direct less chroot(8)'s p50 cost ({}; for reference) | {:.2}× | {:.2}× | |",
        ms(cost),
        ratio(
            api.p50.as_secs_f64(),
            direct.p50.saturating_sub(cost).as_secs_f64()
        ),
        ratio(
            api.p99.as_secs_f64(),
            direct.p99.saturating_sub(cost).as_secs_f64()
        ),
    );
    println!(
        "\nWhere the p50 difference goes: API over direct {}; of which the package's run \
         scripts (run script over direct) {}, the sandbox around the running program (run stage \
         over run script) {}, everything outside the run stage (API over run stage) {}, of \
         which HTTP about {} and the job's set-up (job directory, cgroup, helper, namespaces, \
         overlay mount) the rest. `run.wall_time` has 1 ms resolution.",
        diff_ms(api.p50, direct.p50),
        diff_ms(script.p50, direct.p50),
        diff_ms(wall.p50, script.p50),
        diff_ms(api.p50, wall.p50),
        ms(http.p50),
    );
}

fn print_throughput(rows: &[Throughput], n: usize, chroot_cost: Duration) {
    println!(
        "\n## Throughput: bash `echo hi`, {n} jobs per series and concurrency, the series \
         alternating in halves\n"
    );
    println!(
        "bare: `chroot <bash tree> /bin/bash -c 'echo hi'` (chroot(8) adds about {} per job, \
         see above); sandbox only: the job the API would run, through the runner library in \
         this process (`Jobs::run`, no HTTP, no server). CPU per job: busy time of every \
         CPU of the machine during the series (`/proc/stat`, 10 ms ticks) over the jobs done, \
         this bench's own client threads included\n",
        ms(chroot_cost),
    );
    println!(
        "| concurrency | API jobs/s | bare jobs/s | API / bare | target ≥ 0.7× | sandbox only jobs/s | sandbox only / bare | CPU per job: API / bare / sandbox only | errors |"
    );
    println!("|---:|---:|---:|---:|---|---:|---:|---:|---|");
    for t in rows {
        let r = ratio(t.api.per_second(), t.bare.per_second());
        let errors: Vec<String> = [
            ("API", &t.api),
            ("bare", &t.bare),
            ("sandbox only", &t.sandbox),
        ]
        .iter()
        .filter_map(|(name, rate)| {
            let first = rate.first_error.as_deref()?;
            Some(format!("{name}: {} (first: {first})", rate.errors))
        })
        .collect();
        let errors = if errors.is_empty() {
            "0".to_owned()
        } else {
            errors.join("; ")
        };
        println!(
            "| {} | {:.1} | {:.1} | {r:.2}× | {} | {:.1} | {:.2}× | {} / {} / {} | {errors} |",
            t.concurrency,
            t.api.per_second(),
            t.bare.per_second(),
            verdict(r >= 0.7),
            t.sandbox.per_second(),
            ratio(t.sandbox.per_second(), t.bare.per_second()),
            ms(t.api.cpu_per_job()),
            ms(t.bare.cpu_per_job()),
            ms(t.sandbox.cpu_per_job()),
        );
    }
}

fn print_memory(pid: u32, rows: [(&str, &Memory); 2]) {
    println!("\n## Server memory (pid {pid}, /proc/{pid}/status)\n");
    println!(
        "| when | VmRSS | target ≤ 15 MiB | VmHWM (peak so far) | descendants' VmRSS (sandbox helpers) |"
    );
    println!("|---|---:|---|---:|---:|");
    for (when, m) in rows {
        println!(
            "| {when} | {} | {} | {} | {} in {} processes |",
            mib(m.rss_kb),
            verdict(m.rss_kb <= 15 * 1024),
            mib(m.hwm_kb),
            mib(m.descendants_kb),
            m.descendants
        );
    }
}
