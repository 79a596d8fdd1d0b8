//! Percentiles and the summary file shared by `make bench`'s benchmarks.

use std::path::Path;

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Figures of this run, printed as a table and merged into the summary JSON.
#[derive(Default)]
pub struct Figures {
    rows: Vec<(String, f64)>,
}

impl Figures {
    pub fn add(&mut self, key: &str, value: f64) {
        println!("  {key:<48} {value:>14.3}");
        self.rows.push((key.to_owned(), value));
    }

    /// Merges into `path` (other benchmarks' keys are kept), writing atomically.
    pub fn merge_into(&self, path: &Path) -> anyhow::Result<()> {
        let figures: Vec<(&str, f64)> = self.rows.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        Ok(yun_benchkit::merge_summary(path, &figures)?)
    }
}
