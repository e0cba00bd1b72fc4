//! repo-builder turns the build files in `repository/` into reproducible, signed squashfs images
//! and a signed index that any static file server, or a plain folder, can publish.
//!
//! A package is built on top of its dependencies: their images are mounted and stacked with
//! overlayfs, the build runs chrooted into that stack in a private mount namespace, and only what
//! the build adds (the overlay's upper layer) becomes the package's image.

pub mod build;
pub mod index;
pub mod layout;
pub mod plan;
pub mod recipe;
pub mod shell;
pub mod sign;
pub mod testrun;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use build::{Built, ImageOptions, Outcome};
pub use layout::Layout;
pub use plan::{Plan, Request};
pub use recipe::Recipe;
pub use sign::Signer;

/// Everything that can go wrong while building a repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot access {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad metadata file {}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: ppman::schema::MetaError,
    },
    #[error("{} declares {found} but lives in {expected}", path.display())]
    Misplaced {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{} has no {file}", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("invalid version selector in {text:?}")]
    Selector {
        text: String,
        #[source]
        source: ppman::version::SelectorError,
    },
    #[error("no build file matches {request}")]
    UnknownPackage { request: String },
    #[error("{package} needs {dependency}, repository has: {available}")]
    MissingDependency {
        package: String,
        dependency: String,
        available: String,
    },
    #[error(transparent)]
    Cycle(ppman::schema::CycleError),
    #[error("could not start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed with {status}; full log: {}\n--- last lines ---\n{tail}", log.display())]
    StepFailed {
        what: String,
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error("builder state {} is unreadable (delete it to rebuild)", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("a key already exists at {}", .0.display())]
    KeyExists(PathBuf),
    #[error("cannot load the secret key {}", path.display())]
    KeyLoad {
        path: PathBuf,
        #[source]
        source: minisign::PError,
    },
    #[error("signing failed")]
    Sign(#[source] minisign::PError),
    #[error("the published index is unreadable")]
    Index(#[source] ppman::schema::IndexError),
    #[error("{file} of {package} is named after no language the package provides")]
    TestLanguage { file: String, package: String },
    #[error(
        "cannot install {id} from this builder's index into a scratch data directory (run `repo-builder index` after a build with --no-index)"
    )]
    TestInstall {
        id: String,
        #[source]
        source: ppman::Error,
    },
    #[error("the runner could not be set up for the test jobs")]
    TestRunner(#[source] runner::RunnerError),
    #[error("the test job could not be run")]
    TestJob(#[source] jobs::JobError),
    #[error("{id} has not been built yet")]
    NotBuilt { id: String },
    #[error("cannot stack the build's layers as an overlay")]
    Overlay(#[source] overlay_options::OverlayOptionError),
}

/// Progress of a repository build, reported by [`Builder::build`].
pub trait Progress {
    /// `id` starts building (`index` of `total`).
    fn start(&self, id: &str, index: usize, total: usize);
    /// `id` is done.
    fn finish(&self, id: &str, outcome: Outcome, built: &Built);
}

/// A no-op progress sink.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: usize, _: usize) {}
    fn finish(&self, _: &str, _: Outcome, _: &Built) {}
}

/// A repository of build files and the output it is built into.
#[derive(Debug)]
pub struct Builder {
    pub recipes: plan::Recipes,
    pub layout: Layout,
    pub options: ImageOptions,
}

impl Builder {
    /// Loads every build directory under `repository` (validating all metadata).
    pub fn new(
        repository: &std::path::Path,
        out: PathBuf,
        options: ImageOptions,
    ) -> Result<Self, Error> {
        let repository = std::path::absolute(repository).unwrap_or_else(|_| repository.to_owned());
        Ok(Self {
            recipes: recipe::load_all(&repository)?,
            layout: Layout::new(out),
            options,
        })
    }

    /// Builds what `requests` name (everything when empty) with their dependencies, in order.
    pub fn build(
        &self,
        requests: &[Request],
        signer: &Signer,
        progress: &dyn Progress,
    ) -> Result<Vec<(Outcome, Built)>, Error> {
        let plan = plan::plan(&self.recipes, requests)?;
        let mut built: BTreeMap<String, Built> = BTreeMap::new();
        let mut results = Vec::new();
        let by_id: BTreeMap<String, &Recipe> = self
            .recipes
            .values()
            .flat_map(|v| v.values())
            .map(|r| (r.id(), r))
            .collect();
        for (i, id) in plan.order.iter().enumerate() {
            progress.start(id, i, plan.order.len());
            let stack = &plan.layers[id];
            let deps: Vec<Built> = build::dependency_states(stack, &built)
                .into_iter()
                .cloned()
                .collect();
            let (outcome, b) = build::build(&self.layout, by_id[id], &deps, signer, &self.options)?;
            progress.finish(id, outcome, &b);
            built.insert(id.clone(), b.clone());
            results.push((outcome, b));
        }
        Ok(results)
    }

    /// Runs the tests of the package `request` names, which must be built with its dependencies.
    pub fn test(&self, request: &Request) -> Result<Vec<testrun::TestOutcome>, Error> {
        let plan = plan::plan(&self.recipes, std::slice::from_ref(request))?;
        let id = plan.order.last().expect("a plan has its root").clone();
        let stack = &plan.layers[&id];
        let mut states = Vec::new();
        for layer in stack {
            states.push(
                build::load_built(&self.layout, layer)?
                    .ok_or_else(|| Error::NotBuilt { id: layer.clone() })?,
            );
        }
        let recipe = self
            .recipes
            .values()
            .flat_map(|v| v.values())
            .find(|r| r.id() == id)
            .expect("planned recipes exist");
        testrun::run_tests(&self.layout, &states[0], &recipe.dir)
    }
}
