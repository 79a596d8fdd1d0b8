//! What the benchmarks run on: the real test template (paths and sha256s from its SHA256SUMS),
//! desired VM records pointing at it, and the statistics printed for each measurement.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use yun_fleet::{
    Artifact, DiskFormat, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, VmDesired,
};

/// The built test template (`images/test-template/build.sh`).
pub struct Template {
    pub disk: PathBuf,
    pub image: ImageSpec,
}

const CMDLINE: &str = "console=ttyS0 root=/dev/vda rw panic=-1";

impl Template {
    /// Reads `<dir>/SHA256SUMS` (`<sha256>  <file>` lines) for disk.qcow2, vmlinuz and initrd.img.
    pub fn load(dir: &Path) -> anyhow::Result<Template> {
        let dir = std::path::absolute(dir).with_context(|| format!("resolve {}", dir.display()))?;
        let sums_path = dir.join("SHA256SUMS");
        let sums = std::fs::read_to_string(&sums_path).with_context(|| {
            format!(
                "read {} (build the template: bash images/test-template/build.sh {})",
                sums_path.display(),
                dir.display()
            )
        })?;
        let artifact = |file: &str| -> anyhow::Result<Artifact> {
            let sha = sums
                .lines()
                .filter_map(|l| l.split_once("  "))
                .find(|(_, name)| name.trim() == file)
                .map(|(sha, _)| sha.trim().to_owned());
            match sha {
                Some(sha256) => Ok(Artifact {
                    source: format!("file://{}", dir.join(file).display()),
                    sha256,
                }),
                None => bail!("{}: no entry for {file}", sums_path.display()),
            }
        };
        Ok(Template {
            disk: dir.join("disk.qcow2"),
            image: ImageSpec {
                name: "default/yun-test".into(),
                disk: artifact("disk.qcow2")?,
                format: DiskFormat::Qcow2,
                kernel: Some(artifact("vmlinuz")?),
                initrd: Some(artifact("initrd.img")?),
                cmdline: Some(CMDLINE.into()),
            },
        })
    }

    /// One desired VM on this template.
    pub fn vm(&self, uid: &str, memory_mib: u64) -> VmDesired {
        VmDesired {
            v: SCHEMA_VERSION,
            uid: uid.to_owned(),
            namespace: "bench".into(),
            name: format!("vm-{uid}"),
            generation: 1,
            resources: Resources {
                cpus: 1,
                memory_mib,
                disk_gib: 1,
            },
            image: self.image.clone(),
            hostname: format!("vm-{uid}"),
            user_data: None,
            run_strategy: RunStrategy::Always,
            nics: Vec::new(),
            security_groups: Vec::new(),
            volumes: Vec::new(),
            hold: None,
            identity: None,
        }
    }
}

/// Summary of one series of samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

/// Nearest-rank percentiles (so with 50 samples p99 is the slowest one).
pub fn stats(samples: &[Duration]) -> anyhow::Result<Stats> {
    if samples.is_empty() {
        bail!("no samples");
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let r = (p * ms.len() as f64).ceil() as usize;
        ms[r.clamp(1, ms.len()) - 1]
    };
    Ok(Stats {
        p50: rank(0.50),
        p99: rank(0.99),
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        max: ms[ms.len() - 1],
    })
}
