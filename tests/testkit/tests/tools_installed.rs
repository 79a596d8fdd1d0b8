//! After `scripts/install-deps.sh` (which `make test` runs first), every program the tests run
//! is on `PATH`, every package they come from is one the script installs, and every program a
//! test spawns by a literal name (a `Command::new` of a string) is in the list. A test that needs a new program
//! fails here until the program is listed and installed, rather than on a fresh machine later.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yun_testkit::{TOOLS, find_tool, workspace_root};

/// The `PACKAGES=( … )` array of scripts/install-deps.sh.
fn install_deps_packages() -> BTreeSet<String> {
    let script = std::fs::read_to_string(workspace_root().join("scripts/install-deps.sh"))
        .expect("scripts/install-deps.sh is readable");
    let start = script
        .find("PACKAGES=(")
        .expect("install-deps.sh defines PACKAGES=(…)");
    let body = &script[start + "PACKAGES=(".len()..];
    let end = body.find(')').expect("PACKAGES=( is closed");
    body[..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_tools_package_is_installed_by_install_deps() {
    let packages = install_deps_packages();
    let absent: Vec<String> = TOOLS
        .iter()
        .filter(|t| !packages.contains(t.package))
        .map(|t| format!("{} ({})", t.command, t.package))
        .collect();
    assert!(
        absent.is_empty(),
        "scripts/install-deps.sh does not install the packages of: {absent:?}"
    );
}

#[test]
fn every_tool_is_on_path_after_install_deps() {
    let absent: Vec<String> = TOOLS
        .iter()
        .filter(|t| find_tool(t.command).is_none())
        .map(|t| format!("{} (Debian package {})", t.command, t.package))
        .collect();
    assert!(
        absent.is_empty(),
        "not on PATH ({}): {absent:?}; run scripts/install-deps.sh",
        std::env::var("PATH").unwrap_or_default()
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Programs every machine has (the shell and coreutils), which the list leaves out.
const BASE: [&str; 5] = ["sh", "bash", "true", "sleep", "cat"];

#[test]
fn every_program_a_test_spawns_by_name_is_listed() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    let needle = "Command::new(\"";
    let mut unlisted = BTreeSet::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (at, _) in text.match_indices(needle) {
            let rest = &text[at + needle.len()..];
            let Some(end) = rest.find('"') else { continue };
            let program = &rest[..end];
            let name = program.rsplit('/').next().unwrap_or(program);
            if !BASE.contains(&name) && !TOOLS.iter().any(|t| t.command == name) {
                unlisted.insert(format!("{name} ({})", file.display()));
            }
        }
    }
    assert!(
        files.len() > 100,
        "found only {} Rust files under {}",
        files.len(),
        workspace_root().display()
    );
    assert!(
        unlisted.is_empty(),
        "add these to yun_testkit::TOOLS and scripts/install-deps.sh: {unlisted:?}"
    );
}
