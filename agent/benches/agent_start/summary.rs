//! The figures of a bench run (shared by the agent's benches): a printed table, and the flat
//! JSON object of numbers that `target/bench/summary.json` is (merged, so the other
//! benchmarks' keys stay).

use crate::fixture::Stats;
use anyhow::Context;
use serde_json::{Map, Value};
use std::path::Path;

/// Rows of the printed table, and the summary keys.
#[derive(Debug, Default)]
pub struct Results {
    rows: Vec<(String, f64, &'static str)>,
}

impl Results {
    pub fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.rows.push((name.into(), value, unit));
    }

    /// `<prefix>_{p50,p99,mean}_ms<suffix>`.
    pub fn add_stats(&mut self, prefix: &str, suffix: &str, s: Stats) {
        self.add(format!("{prefix}_p50_ms{suffix}"), s.p50, "ms");
        self.add(format!("{prefix}_p99_ms{suffix}"), s.p99, "ms");
        self.add(format!("{prefix}_mean_ms{suffix}"), s.mean, "ms");
    }

    /// [`Results::add_stats`] plus `<prefix>_max_ms<suffix>`.
    // Every bench compiles this file on its own, and not every bench reports maxima.
    #[allow(dead_code)]
    pub fn add_stats_with_max(&mut self, prefix: &str, suffix: &str, s: Stats) {
        self.add_stats(prefix, suffix, s);
        self.add(format!("{prefix}_max_ms{suffix}"), s.max, "ms");
    }

    pub fn print(&self) {
        let width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(4);
        println!("\n{:<width$}  {:>12}  unit", "name", "value");
        for (name, value, unit) in &self.rows {
            println!("{name:<width$}  {value:>12.3}  {unit}");
        }
    }

    /// Merges into the existing summary (other benchmarks' keys are kept) and writes it atomically.
    pub fn write_summary(&self, path: &Path) -> anyhow::Result<()> {
        let mut summary = match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    eprintln!(
                        "bench: {} is not a JSON object; replacing it",
                        path.display()
                    );
                    Map::new()
                }
            },
            Err(_) => Map::new(),
        };
        for (name, value, _) in &self.rows {
            let rounded = (value * 1000.0).round() / 1000.0;
            summary.insert(name.clone(), serde_json::json!(rounded));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        Ok(())
    }
}
