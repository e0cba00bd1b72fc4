//! The real [`Engine`]: `ppman` for packages and mounted trees, `runner` for sandboxed jobs.

use std::sync::Arc;

use crate::config::Config;
use crate::engine::Engine;

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("the ppman/runner adapter is not available in this build")]
    Unavailable,
}

/// Builds the engine for `config`.
pub fn build(_config: &Config) -> Result<Arc<dyn Engine>, AdapterError> {
    Err(AdapterError::Unavailable)
}
