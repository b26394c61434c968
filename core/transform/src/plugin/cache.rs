//! Compiled components, cached on disk so that a second process deserialises (~1 ms) instead of
//! compiling (70 ms optimised, over a second in an unoptimised host).
//!
//! A file is named by the SHA-256 of the component and the engine's compatibility hash (which
//! covers the wasmtime version and the engine's settings), so a changed plugin or a new wasmtime
//! never picks up a stale artifact. Deserialising runs native code from the file: the cache
//! directory must be writable only by the account that runs rosterflow.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;

/// The component for `wasm`, from the disk cache when `dir` has it, else compiled (and written
/// there when there is a `dir`).
#[allow(unsafe_code)] // deserialising compiled artifacts: see the SAFETY notes below
pub(crate) fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    sha256: &[u8; 32],
    dir: Option<&Path>,
    plugin: &str,
) -> Result<Component, PluginError> {
    let compile_error = |source: wasmtime::Error| PluginError::Compile {
        plugin: plugin.to_owned(),
        source: source.into_boxed_dyn_error(),
    };
    let Some(dir) = dir else {
        return Component::new(engine, wasm).map_err(compile_error);
    };
    let path = artifact_path(engine, dir, sha256);
    if path.is_file() {
        // SAFETY: the file was written by `store` below from `precompile_component`, in a
        // directory only this service writes to, under a name that pins the component's hash
        // and the engine's compatibility hash; wasmtime also checks its header on load.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(err) => tracing::warn!(
                plugin,
                path = %path.display(),
                "cached plugin artifact is unusable; recompiling: {err:#}"
            ),
        }
    }
    let artifact = engine.precompile_component(wasm).map_err(compile_error)?;
    if let Err(err) = store(dir, &path, &artifact) {
        // A cache that cannot be written costs time, not correctness.
        tracing::warn!(plugin, path = %path.display(), "cannot cache compiled plugin: {err}");
    }
    // SAFETY: `artifact` was produced by this engine's `precompile_component` just above.
    unsafe { Component::deserialize(engine, &artifact) }.map_err(compile_error)
}

fn artifact_path(engine: &Engine, dir: &Path, sha256: &[u8; 32]) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!(
        "{}-{:016x}.cwasm",
        hex::encode(sha256),
        hasher.finish()
    ))
}

/// Writes atomically (a temporary file, then a rename) so a concurrent process never reads half
/// an artifact.
fn store(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, artifact)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
