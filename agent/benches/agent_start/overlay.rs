//! Per-VM root disk creation: the agent's qcow2 overlay on the template versus the naive full
//! copy of the template a design without backing files would make for every VM.

use anyhow::Context;
use std::path::Path;
use std::time::{Duration, Instant};
use yun_agent::images::create_overlay;
use yun_fleet::DiskFormat;

/// `n` overlays of `base` in `dir`, one after another; the time of each.
pub fn overlays(base: &Path, dir: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    (0..n)
        .map(|i| {
            let overlay = dir.join(format!("overlay-{i:02}.qcow2"));
            let t0 = Instant::now();
            create_overlay(base, DiskFormat::Qcow2, &overlay, 1)?;
            Ok(t0.elapsed())
        })
        .collect()
}

/// `n` full copies of `base` in `dir`, one after another; the time of each.
pub fn full_copies(base: &Path, dir: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    (0..n)
        .map(|i| {
            let copy = dir.join(format!("copy-{i:02}.qcow2"));
            let t0 = Instant::now();
            std::fs::copy(base, &copy).with_context(|| format!("copy to {}", copy.display()))?;
            Ok(t0.elapsed())
        })
        .collect()
}
