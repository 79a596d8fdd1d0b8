//! Prints Yun's CRDs as multi-document YAML, writes them one file per kind (`--out DIR`), or
//! checks that the files in a directory are what this build would write (`--check DIR`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Generate the yun.dev CustomResourceDefinitions")]
struct Args {
    /// Write DIR/<plural>.yun.dev.yaml for every kind instead of printing to stdout.
    #[arg(long, value_name = "DIR", conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Exit non-zero if DIR/<plural>.yun.dev.yaml differ from what --out would write.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

/// `(file name, YAML)` for every CRD.
fn rendered() -> Result<Vec<(String, String)>> {
    yun_crds::all_crds()
        .into_iter()
        .map(|crd| {
            let name = crd
                .metadata
                .name
                .clone()
                .context("generated CRD has no name")?;
            let yaml =
                serde_yaml::to_string(&crd).with_context(|| format!("serializing CRD {name}"))?;
            Ok((format!("{name}.yaml"), yaml))
        })
        .collect()
}

fn write_all(dir: &Path, files: &[(String, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, yaml) in files {
        let path = dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Describes how `actual` differs from `expected`: the first differing line, or a length change.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    let (mut exp, mut act) = (expected.lines(), actual.lines());
    for line_no in 1.. {
        match (exp.next(), act.next()) {
            (None, None) => return None,
            (e, a) if e == a => continue,
            (e, a) => {
                return Some(format!(
                    "first difference at line {line_no}:\n  - {}\n  + {}",
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>")
                ));
            }
        }
    }
    None
}

/// Returns a description of every stale or missing file (empty when all are current).
fn check_all(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    let mut stale = Vec::new();
    for (name, expected) in files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Err(e) => stale.push(format!("{}: cannot read: {e}", path.display())),
            Ok(actual) if actual == *expected => {}
            Ok(actual) => {
                let diff = first_difference(expected, &actual)
                    .unwrap_or_else(|| "trailing whitespace differs".into());
                stale.push(format!("{} is out of date ({diff})", path.display()));
            }
        }
    }
    stale
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let files = rendered()?;
    if let Some(dir) = &args.out {
        write_all(dir, &files)?;
    } else if let Some(dir) = &args.check {
        let stale = check_all(dir, &files);
        if !stale.is_empty() {
            for s in &stale {
                eprintln!("{s}");
            }
            eprintln!(
                "regenerate with: cargo run -p yun-crds --bin crdgen -- --out {}",
                dir.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    } else {
        let docs: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
        print!("{}", docs.join("---\n"));
    }
    Ok(ExitCode::SUCCESS)
}
