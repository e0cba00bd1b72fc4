//! `ppman`: the command-line front of the ppman library.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ppman::{PackageManager, Progress, Selector};

/// Piston package manager: signed repositories, verified squashfs images, overlay-stacked runtimes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Piston's data directory; ppman keeps its files under <data-dir>/ppman.
    #[arg(
        long,
        global = true,
        env = "PISTON_DATA_DIRECTORY",
        default_value = "/var/lib/piston"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage repositories.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Download and verify the index of one repository (default: all).
    Sync { repo: Option<String> },
    /// List packages the repositories offer, or the installed ones.
    List {
        #[arg(long)]
        installed: bool,
        #[arg(long)]
        repo: Option<String>,
    },
    /// Show one package: author, size, checksums, dependencies, URLs.
    Info {
        /// NAME or NAME=SELECTOR
        package: String,
        #[arg(long)]
        repo: Option<String>,
    },
    /// Install packages with their dependencies.
    Install {
        /// NAME or NAME=SELECTOR (npm style: 3.x, 3.10, 15.10.0 exact, *)
        #[arg(required = true)]
        packages: Vec<String>,
        #[arg(long)]
        repo: Option<String>,
    },
    /// Uninstall packages and the dependencies nothing else needs.
    Uninstall {
        #[arg(required = true)]
        packages: Vec<String>,
        /// Also uninstall the packages that need them.
        #[arg(long)]
        cascade: bool,
    },
    /// Remove unneeded packages, stray mounts and unreferenced files.
    Gc,
    /// Re-hash every installed image.
    Verify,
    /// Rebuild every mount from the state file (after a reboot); idempotent.
    Reconcile,
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Add a repository: URL is http(s)://, file:// or a local folder.
    Add {
        name: String,
        url: String,
        /// minisign public key: a file or the base64 key.
        #[arg(long)]
        key: String,
    },
    List,
    Remove {
        name: String,
    },
}

fn split_request(text: &str) -> anyhow::Result<(String, Selector)> {
    let (name, sel) = text.split_once('=').unwrap_or((text, "*"));
    let selector = Selector::parse(sel).with_context(|| format!("in {text:?}"))?;
    Ok((name.to_owned(), selector))
}

/// indicatif bars on a terminal, one line per event otherwise.
struct CliProgress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl CliProgress {
    fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Self { bars }
    }
}

impl Progress for CliProgress {
    fn start(&self, label: &str, total: u64) {
        match &self.bars {
            Some((multi, bars)) => {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_message(label.to_owned());
                bars.lock()
                    .expect("progress lock")
                    .insert(label.to_owned(), bar);
            }
            None => eprintln!("downloading {label} ({total} bytes)"),
        }
    }

    fn advance(&self, label: &str, done: u64) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().expect("progress lock").get(label)
        {
            bar.set_position(done);
        }
    }

    fn finish(&self, label: &str, ok: bool) {
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.lock().expect("progress lock").remove(label) {
                    bar.finish_and_clear();
                }
            }
            None => eprintln!("{} {label}", if ok { "verified" } else { "failed" }),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let pm = PackageManager::open(&cli.data_dir)?.with_progress(Arc::new(CliProgress::new()));
    match cli.command {
        Command::Repo { command } => match command {
            RepoCommand::Add { name, url, key } => repo_add(&pm, &name, &url, key),
            RepoCommand::List => repo_list(&pm),
            RepoCommand::Remove { name } => repo_remove(&pm, &name),
        },
        Command::Sync { repo } => sync(&pm, repo.as_deref()),
        Command::List {
            installed: true, ..
        } => list_installed(&pm),
        Command::List { repo, .. } => list_available(&pm, repo.as_deref()),
        Command::Info { package, repo } => info(&pm, &package, repo.as_deref()),
        Command::Install { packages, repo } => install(&pm, &packages, repo.as_deref()),
        Command::Uninstall { packages, cascade } => uninstall(&pm, &packages, cascade),
        Command::Gc => gc(&pm),
        Command::Verify => verify(&pm),
        Command::Reconcile => reconcile(&pm),
    }
}

/// `repo add`: the key is a file's content when `key` names a file.
fn repo_add(pm: &PackageManager, name: &str, url: &str, key: String) -> anyhow::Result<()> {
    let key_text = if std::path::Path::new(&key).is_file() {
        std::fs::read_to_string(&key).with_context(|| format!("reading key file {key}"))?
    } else {
        key
    };
    pm.repo_add(name, url, &key_text)?;
    println!("added repository {name} ({url}); run `ppman sync {name}`");
    Ok(())
}

/// `repo list`: name, url and what was last synced.
fn repo_list(pm: &PackageManager) -> anyhow::Result<()> {
    for r in pm.repos()? {
        let synced = r.index_version.map_or("never synced".to_owned(), |v| {
            format!("index version {v}, {} packages", r.packages)
        });
        println!("{}\t{}\t{synced}", r.name, r.url);
    }
    Ok(())
}

/// `repo remove`.
fn repo_remove(pm: &PackageManager, name: &str) -> anyhow::Result<()> {
    pm.repo_remove(name)?;
    println!("removed repository {name}");
    Ok(())
}

/// `sync`: each repository's new index version.
fn sync(pm: &PackageManager, repo: Option<&str>) -> anyhow::Result<()> {
    for r in pm.sync(repo)? {
        let from = r.previous.map_or(String::new(), |p| format!(" (was {p})"));
        println!(
            "{}: index version {}{from}, {} packages",
            r.repo, r.version, r.packages
        );
    }
    Ok(())
}

/// `list --installed`: `NAME VERSION<TAB>LANGUAGES<TAB>TREE[ (dependency)]` (scripts parse it).
fn list_installed(pm: &PackageManager) -> anyhow::Result<()> {
    for p in pm.installed()? {
        let langs: Vec<&str> = p
            .entry
            .provides
            .iter()
            .map(|l| l.language.as_str())
            .collect();
        let how = if p.root { "" } else { " (dependency)" };
        println!(
            "{} {}\t{}\t{}{how}",
            p.entry.name,
            p.entry.version,
            langs.join(","),
            p.tree.display()
        );
    }
    Ok(())
}

/// `list`: the repositories' packages, `*` for installed ones.
fn list_available(pm: &PackageManager, repo: Option<&str>) -> anyhow::Result<()> {
    for p in pm.available(repo)? {
        let mark = if p.installed { "*" } else { " " };
        println!(
            "{mark} {}/{} {}\t{}",
            p.repo, p.entry.name, p.entry.version, p.entry.description
        );
    }
    Ok(())
}

/// `info`: everything known about one package.
fn info(pm: &PackageManager, package: &str, repo: Option<&str>) -> anyhow::Result<()> {
    let (name, selector) = split_request(package)?;
    let i = pm.info(&name, &selector, repo)?;
    let e = &i.entry;
    println!("name:         {}", e.name);
    println!("version:      {}", e.version);
    println!("repository:   {}", i.repo);
    println!("installed:    {}", i.installed);
    println!("author:       {}", e.author);
    println!("description:  {}", e.description);
    let langs: Vec<String> = e
        .provides
        .iter()
        .map(|p| {
            if p.aliases.is_empty() {
                p.language.clone()
            } else {
                format!("{} ({})", p.language, p.aliases.join(", "))
            }
        })
        .collect();
    println!("languages:    {}", langs.join("; "));
    println!("compiled:     {}", e.compiled);
    println!("size:         {} bytes", e.size);
    println!("sha256:       {}", e.sha256);
    let deps: Vec<String> = e
        .dependencies
        .iter()
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
    println!("dependencies: {}", deps.join(", "));
    if !i.resolved_deps.is_empty() {
        let r: Vec<String> = i.resolved_deps.iter().map(ToString::to_string).collect();
        println!("resolved:     {}", r.join(", "));
    }
    if !i.dependents.is_empty() {
        let r: Vec<String> = i.dependents.iter().map(ToString::to_string).collect();
        println!("needed by:    {}", r.join(", "));
    }
    println!("download:     {}", i.download_url);
    println!(
        "build files:  {} (sha256 {})",
        i.build_file_url, e.build_file.sha256
    );
    Ok(())
}

/// `install`: every request resolved together, dependencies included.
fn install(pm: &PackageManager, packages: &[String], repo: Option<&str>) -> anyhow::Result<()> {
    let requests = packages
        .iter()
        .map(|p| split_request(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outcome = pm.install_many(&requests, repo)?;
    for p in &outcome.added {
        println!("added {} (from {})", p.id, p.repo);
    }
    for p in &outcome.roots {
        println!("installed {}", p.id);
    }
    Ok(())
}

/// `uninstall`, one request after the other.
fn uninstall(pm: &PackageManager, packages: &[String], cascade: bool) -> anyhow::Result<()> {
    for p in packages {
        let (name, selector) = split_request(p)?;
        for p in pm.uninstall(&name, &selector, cascade)?.removed {
            println!("removed {}", p.id);
        }
    }
    Ok(())
}

/// `gc`: what is no longer needed, removed.
fn gc(pm: &PackageManager) -> anyhow::Result<()> {
    let r = pm.gc()?;
    for id in &r.packages {
        println!("removed {id}");
    }
    println!(
        "removed {} packages, {} files ({} bytes), {} mounts",
        r.packages.len(),
        r.files.len(),
        r.freed_bytes,
        r.unmounted.len()
    );
    Ok(())
}

/// `verify`: every installed image against its sha256.
fn verify(pm: &PackageManager) -> anyhow::Result<()> {
    let problems = pm.verify()?;
    for p in &problems {
        match &p.actual {
            Some(actual) => println!(
                "{}: {} has sha256 {actual}, expected {}",
                p.package,
                p.path.display(),
                p.expected
            ),
            None => println!("{}: {} is missing", p.package, p.path.display()),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{} installed images are damaged; uninstall and reinstall them",
            problems.len()
        );
    }
    println!("all installed images match their sha256");
    Ok(())
}

/// `reconcile`: the mounts rebuilt from the state file (after a reboot).
fn reconcile(pm: &PackageManager) -> anyhow::Result<()> {
    let r = pm.reconcile()?;
    println!(
        "mounted {}, unmounted {}",
        r.mounted.len(),
        r.unmounted.len()
    );
    for f in &r.failed {
        println!(
            "cannot mount {} on {}: {}",
            f.what,
            f.target.display(),
            f.error
        );
    }
    if let Some(first) = r.failed.first() {
        return Err(anyhow::Error::new(first.to_error())
            .context(format!("{} mounts could not be made", r.failed.len())));
    }
    Ok(())
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    let e = err.downcast_ref::<ppman::Error>()?;
    Some(match e {
        ppman::Error::NotSynced(_) | ppman::Error::CachedIndex { .. } => "run `ppman sync`",
        ppman::Error::NoRepos => "add one with `ppman repo add NAME URL --key KEY`",
        ppman::Error::Index { .. } => {
            "the repository or its mirror may be compromised or stale; check the key and the URL"
        }
        ppman::Error::Digest { .. }
        | ppman::Error::Oversize { .. }
        | ppman::Error::ImageSignature { .. } => {
            "the image does not match the signed index; nothing was installed"
        }
        ppman::Error::Mount { .. } | ppman::Error::Unmount { .. } => {
            "ppman needs root, loop devices and overlayfs"
        }
        ppman::Error::Resolve(_) => "see `ppman list` for what the repositories offer",
        _ => return None,
    })
}

fn main() -> ExitCode {
    cli_support::init_tracing();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            cli_support::report(&*err, hint(&err));
            let user = err
                .downcast_ref::<ppman::Error>()
                .is_some_and(ppman::Error::is_user_error)
                || err
                    .downcast_ref::<ppman::version::SelectorError>()
                    .is_some();
            cli_support::exit_code(user)
        }
    }
}
