//! The figures of a bench run (shared by the agent's benches): a printed table, and the flat
//! JSON object of numbers that `target/bench/summary.json` is (merged, so the other
//! benchmarks' keys stay).

use crate::fixture::Stats;
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
        let figures: Vec<(&str, f64)> = self
            .rows
            .iter()
            .map(|(name, value, _)| (name.as_str(), *value))
            .collect();
        Ok(yun_benchkit::merge_summary(path, &figures)?)
    }
}
