//! `repo-builder`: build Piston packages into signed squashfs images and a signed index.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use repo_builder::{Builder, Built, ImageOptions, Outcome, Progress, Request, Signer, index, sign};

#[derive(Parser)]
#[command(
    version,
    about = "Build Piston packages into signed squashfs images and a signed index"
)]
struct Cli {
    /// Directory of build files (`<name>/<version>/package.toml`).
    #[arg(
        long,
        env = "PISTON_REPOSITORY",
        default_value = "repository",
        global = true
    )]
    repository: PathBuf,
    /// Output directory: images, index and builder state.
    #[arg(
        long,
        env = "PISTON_REPO_OUT",
        default_value = "out/repo",
        global = true
    )]
    out: PathBuf,
    /// Secret key used to sign images and the index.
    #[arg(
        long,
        env = "PISTON_REPO_KEY",
        default_value = "out/keys/piston.key",
        global = true
    )]
    key: PathBuf,
    /// zstd compression level of images (3: fast, for development and CI; 15+: releases).
    #[arg(
        long,
        env = "PISTON_REPO_COMPRESSION_LEVEL",
        default_value_t = 15,
        global = true
    )]
    compression_level: u32,
    /// Timestamps newer than this (unix seconds) are clamped to it, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = ImageOptions::default().source_date_epoch, global = true)]
    source_date_epoch: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key pair (piston.key, piston.pub) next to --key.
    Keygen,
    /// Build packages (all when none is named) with their dependencies, then sign the index.
    Build {
        /// `NAME` or `NAME=SELECTOR`.
        packages: Vec<String>,
        /// Do not write the index afterwards.
        #[arg(long)]
        no_index: bool,
        /// Days the signed index stays valid.
        #[arg(long, default_value_t = index::DEFAULT_VALIDITY_DAYS)]
        validity_days: u64,
    },
    /// (Re)write and sign the index from every built image.
    Index {
        #[arg(long, default_value_t = index::DEFAULT_VALIDITY_DAYS)]
        validity_days: u64,
    },
    /// Copy the published tree (index, signature, key, images, build files) into DIR.
    Publish { dir: PathBuf },
    /// Run the test files of built packages on their stacks; each must print OK.
    Test {
        #[arg(required = true)]
        packages: Vec<String>,
    },
    /// List the build files of the repository.
    List,
    /// Print a Markdown table of every built image: build time, layer size, image size.
    Report,
}

struct Bars {
    bar: Option<ProgressBar>,
    started: std::cell::Cell<Instant>,
}

impl Progress for Bars {
    fn start(&self, id: &str, index: usize, total: usize) {
        self.started.set(Instant::now());
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(index as u64);
                bar.set_message(format!("building {id}"));
            }
            None => eprintln!("[{}/{total}] building {id}", index + 1),
        }
    }
    fn finish(&self, id: &str, outcome: Outcome, built: &Built) {
        let secs = self.started.get().elapsed().as_secs_f64();
        let what = match outcome {
            Outcome::Built => format!("built in {secs:.1}s"),
            Outcome::UpToDate => "up to date".to_owned(),
        };
        let line = format!(
            "{id}: {what}, {:.1} MiB, sha256 {}",
            built.size as f64 / 1048576.0,
            &built.sha256[..16]
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let options = ImageOptions {
        compression_level: cli.compression_level,
        source_date_epoch: cli.source_date_epoch,
    };
    let signer = || Signer::load(&cli.key);
    match cli.command {
        Command::Keygen => {
            let dir = cli.key.parent().map(PathBuf::from).unwrap_or_default();
            let (sk, pk) = sign::keygen(&dir)?;
            println!("secret key: {}\npublic key: {}", sk.display(), pk.display());
        }
        Command::List => {
            let builder = Builder::new(&cli.repository, cli.out, options)?;
            for (name, versions) in &builder.recipes {
                for (version, recipe) in versions {
                    let langs: Vec<&str> = recipe
                        .meta
                        .provides
                        .iter()
                        .map(|p| p.language.as_str())
                        .collect();
                    let deps: Vec<String> = recipe
                        .meta
                        .dependencies
                        .iter()
                        .map(|(n, s)| format!("{n} {s}"))
                        .collect();
                    println!(
                        "{name} {version}\tprovides: {}\tdepends: {}",
                        langs.join(","),
                        deps.join(",")
                    );
                }
            }
        }
        Command::Build {
            packages,
            no_index,
            validity_days,
        } => {
            let signer = signer()?;
            let builder = Builder::new(&cli.repository, cli.out, options)?;
            let requests = packages
                .iter()
                .map(|p| p.parse())
                .collect::<Result<Vec<Request>, _>>()?;
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} {msg}")
                        .expect("valid template"),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                bar
            });
            let progress = Bars {
                bar,
                started: std::cell::Cell::new(Instant::now()),
            };
            let result = builder.build(&requests, &signer, &progress);
            if let Some(bar) = &progress.bar {
                bar.finish_and_clear();
            }
            result?;
            if !no_index {
                let idx = index::write_index(&builder.layout, &signer, validity_days)?;
                eprintln!(
                    "index version {} with {} packages written to {}",
                    idx.version,
                    idx.packages.len(),
                    builder.layout.out.display()
                );
            }
        }
        Command::Report => {
            let layout = repo_builder::Layout::new(cli.out);
            println!("| package | version | build time (s) | layer (MiB) | image (MiB) | sha256 |");
            println!("|---|---|---:|---:|---:|---|");
            for b in index::all_built(&layout)? {
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
                    b.meta.name,
                    b.meta.version,
                    b.build_seconds,
                    b.tree_bytes as f64 / 1048576.0,
                    b.size as f64 / 1048576.0,
                    &b.sha256[..12]
                );
            }
        }
        Command::Index { validity_days } => {
            let signer = signer()?;
            let layout = repo_builder::Layout::new(cli.out);
            let idx = index::write_index(&layout, &signer, validity_days)?;
            eprintln!(
                "index version {} with {} packages",
                idx.version,
                idx.packages.len()
            );
        }
        Command::Publish { dir } => {
            let layout = repo_builder::Layout::new(cli.out);
            let n = index::publish(&layout, &dir)?;
            eprintln!("published {n} packages to {}", dir.display());
        }
        Command::Test { packages } => {
            let builder = Builder::new(&cli.repository, cli.out, options)?;
            let mut failed = 0;
            for p in &packages {
                let request: Request = p.parse()?;
                for t in builder.test(&request)? {
                    if t.passed {
                        println!("ok   {p} {} ({})", t.file, t.language);
                    } else {
                        failed += 1;
                        println!("FAIL {p} {} ({}): {}", t.file, t.language, t.output.trim());
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} test file(s) did not print OK");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    cli_support::init_tracing();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let hint = err.downcast_ref::<repo_builder::Error>().and_then(hint);
            cli_support::report(&*err, hint.as_deref());
            // repo-builder does not tell user errors from internal ones: every failure exits 1.
            cli_support::exit_code(false)
        }
    }
}

/// A next step for the errors a user can fix.
fn hint(err: &repo_builder::Error) -> Option<String> {
    use repo_builder::Error as E;
    Some(match err {
        E::KeyLoad { .. } | E::Io { .. } if err.to_string().contains(".key") => {
            "create a signing key with `repo-builder keygen` (or pass --key)".to_owned()
        }
        E::NotBuilt { id } => format!(
            "build it first: `repo-builder build {}`",
            id.rsplit_once('-').map_or(id.as_str(), |(n, _)| n)
        ),
        E::StepFailed { log, .. } => format!("the full output is in {}", log.display()),
        E::MissingDependency { .. } | E::UnknownPackage { .. } => {
            "`repo-builder list` shows the build files there are".to_owned()
        }
        E::Meta { .. } | E::Misplaced { .. } => {
            "see docs/package-format.md for the package.toml fields".to_owned()
        }
        E::KeyExists(_) => "keep the existing key, or move it away to make a new one".to_owned(),
        E::Index(_) => "run `repo-builder build` or `repo-builder index` first".to_owned(),
        _ => return None,
    })
}
