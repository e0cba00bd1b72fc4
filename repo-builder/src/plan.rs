//! Which recipes to build, in which order, on which layers.

use std::collections::{BTreeMap, BTreeSet};

use ppman::Selector;
use ppman::schema::layer_order;
use semver::Version;

use crate::Error;
use crate::recipe::Recipe;

/// All recipes of a repository, by name then version.
pub type Recipes = BTreeMap<String, BTreeMap<Version, Recipe>>;

/// A recipe id: `name-version`.
pub type Id = String;

/// What to build: every needed recipe in dependency order, and each one's layer stack.
#[derive(Debug)]
pub struct Plan {
    /// Build order: every recipe after all of its dependencies.
    pub order: Vec<Id>,
    /// For every recipe, its layers top-most first (itself, then its closure).
    pub layers: BTreeMap<Id, Vec<Id>>,
}

/// A build request: `NAME` or `NAME=SELECTOR`.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub selector: Selector,
}

impl std::str::FromStr for Request {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, selector) = match s.split_once('=') {
            Some((n, sel)) => (
                n,
                Selector::parse(sel).map_err(|source| Error::Selector {
                    text: s.to_owned(),
                    source,
                })?,
            ),
            None => (s, Selector::any()),
        };
        Ok(Self {
            name: name.to_owned(),
            selector,
        })
    }
}

/// Picks the highest recipe of `name` matching `selector`.
fn pick<'a>(recipes: &'a Recipes, name: &str, selector: &Selector) -> Option<&'a Recipe> {
    let versions = recipes.get(name)?;
    let best = selector.best(versions.keys())?;
    versions.get(best)
}

/// Resolves a recipe's direct dependencies to recipe ids, or says which one is missing.
fn direct_deps(recipes: &Recipes, recipe: &Recipe) -> Result<Vec<Id>, Error> {
    recipe
        .meta
        .dependencies
        .iter()
        .map(|(name, sel)| {
            let selector = Selector::parse(sel).map_err(|source| Error::Selector {
                text: sel.clone(),
                source,
            })?;
            pick(recipes, name, &selector)
                .map(Recipe::id)
                .ok_or_else(|| {
                    let have: Vec<String> = recipes
                        .get(name)
                        .map(|v| v.keys().map(ToString::to_string).collect())
                        .unwrap_or_default();
                    Error::MissingDependency {
                        package: recipe.id(),
                        dependency: format!("{name} {sel}"),
                        available: if have.is_empty() {
                            "none".to_owned()
                        } else {
                            have.join(", ")
                        },
                    }
                })
        })
        .collect()
}

/// Builds the plan for `requests` (all recipes, every version, when empty).
pub fn plan(recipes: &Recipes, requests: &[Request]) -> Result<Plan, Error> {
    let by_id: BTreeMap<Id, &Recipe> = recipes
        .values()
        .flat_map(|versions| versions.values())
        .map(|r| (r.id(), r))
        .collect();
    let mut roots: Vec<Id> = Vec::new();
    if requests.is_empty() {
        roots.extend(by_id.keys().cloned());
    }
    for request in requests {
        let recipe = pick(recipes, &request.name, &request.selector).ok_or_else(|| {
            Error::UnknownPackage {
                request: format!("{}={}", request.name, request.selector),
            }
        })?;
        roots.push(recipe.id());
    }

    // Resolve the dependencies of everything reachable from the roots; the first failure is reported.
    let mut deps: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    let mut queue = roots.clone();
    while let Some(id) = queue.pop() {
        if deps.contains_key(&id) {
            continue;
        }
        let direct = direct_deps(recipes, by_id[&id])?;
        queue.extend(direct.iter().cloned());
        deps.insert(id, direct);
    }

    let stack_of = |id: &str| {
        layer_order(id, |node| deps.get(node).cloned().unwrap_or_default()).map_err(Error::Cycle)
    };
    let mut order: Vec<Id> = Vec::new();
    let mut seen = BTreeSet::new();
    for root in &roots {
        // Bottom of the stack first, so every dependency is built before its dependents.
        for id in stack_of(root)?.into_iter().rev() {
            if seen.insert(id.clone()) {
                order.push(id);
            }
        }
    }
    let layers = order
        .iter()
        .map(|id| Ok((id.clone(), stack_of(id)?)))
        .collect::<Result<BTreeMap<_, _>, Error>>()?;
    Ok(Plan { order, layers })
}
