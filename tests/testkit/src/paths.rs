//! Where the workspace and its built binaries are.

use std::path::{Path, PathBuf};

use crate::TestkitError;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    // This crate lives at <root>/tests/testkit.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            Path::to_path_buf,
        )
}

/// Path of a workspace binary in the debug profile directory. It is not built here: building
/// from inside a test would fight the outer cargo for the target-dir lock.
pub fn binary(name: &str) -> Result<PathBuf, TestkitError> {
    let searched = candidate_dirs();
    searched
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| TestkitError::BinaryMissing {
            name: name.to_owned(),
            searched,
        })
}

/// Profile directories to look in, most specific first: the one the running test executable
/// sits in (`<target>/debug/deps/<test>`), then `$CARGO_TARGET_DIR/debug`, then
/// `<root>/target/debug`.
fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent().filter(|d| d.ends_with("deps"))
        && let Some(profile) = deps.parent()
    {
        dirs.push(profile.to_path_buf());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        let target = if target.is_absolute() {
            target
        } else {
            workspace_root().join(target)
        };
        dirs.push(target.join("debug"));
    }
    dirs.push(workspace_root().join("target").join("debug"));
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("root Cargo.toml is readable");
        assert!(manifest.contains("[workspace]"));
        assert!(manifest.contains("tests/testkit"));
    }

    #[test]
    fn missing_binary_error_names_it_and_says_how_to_build() {
        let err = binary("yun-no-such-binary").expect_err("this binary does not exist");
        let message = err.to_string();
        assert!(message.contains("yun-no-such-binary"), "{message}");
        assert!(
            message.contains("cargo build --workspace --bins"),
            "{message}"
        );
    }
}
