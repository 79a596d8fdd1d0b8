//! `Host.spec.overcommit`: how far `Burstable` VMs may overcommit a host's cpu, memory and disk.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::Checker;

/// Bounds of `spec.overcommit.cpu` (vCPUs placed per physical CPU).
pub const OVERCOMMIT_CPU_MIN: f64 = 1.0;
pub const OVERCOMMIT_CPU_MAX: f64 = 16.0;
/// `spec.overcommit.cpu` when not given.
pub const OVERCOMMIT_CPU_DEFAULT: f64 = 4.0;
/// Bounds of `spec.overcommit.memory`.
pub const OVERCOMMIT_MEMORY_MIN: f64 = 1.0;
pub const OVERCOMMIT_MEMORY_MAX: f64 = 4.0;
/// `spec.overcommit.memory` when not given: guest memory is not overcommitted by default.
pub const OVERCOMMIT_MEMORY_DEFAULT: f64 = 1.0;
/// Bounds of `spec.overcommit.disk`.
pub const OVERCOMMIT_DISK_MIN: f64 = 1.0;
pub const OVERCOMMIT_DISK_MAX: f64 = 4.0;
/// `spec.overcommit.disk` when not given: disk is not overcommitted by default.
pub const OVERCOMMIT_DISK_DEFAULT: f64 = 1.0;

/// How far `Burstable` VMs may overcommit a host, per dimension: they share what `Guaranteed`
/// VMs leave, multiplied by the ratio. `Guaranteed` VMs are never overcommitted.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overcommit {
    /// vCPUs per physical CPU, 1.0 to 16.0 (default 4.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = OVERCOMMIT_CPU_MIN, max = OVERCOMMIT_CPU_MAX))]
    pub cpu: Option<f64>,
    /// Guest memory per unit of host memory, 1.0 to 4.0 (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = OVERCOMMIT_MEMORY_MIN, max = OVERCOMMIT_MEMORY_MAX))]
    pub memory: Option<f64>,
    /// Virtual disk size per unit of host disk, 1.0 to 4.0 (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = OVERCOMMIT_DISK_MIN, max = OVERCOMMIT_DISK_MAX))]
    pub disk: Option<f64>,
}

/// A host's overcommit ratios with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OvercommitRatios {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for OvercommitRatios {
    fn default() -> Self {
        OvercommitRatios {
            cpu: OVERCOMMIT_CPU_DEFAULT,
            memory: OVERCOMMIT_MEMORY_DEFAULT,
            disk: OVERCOMMIT_DISK_DEFAULT,
        }
    }
}

impl Overcommit {
    /// The ratios, defaults filled in.
    pub fn ratios(&self) -> OvercommitRatios {
        let d = OvercommitRatios::default();
        OvercommitRatios {
            cpu: self.cpu.unwrap_or(d.cpu),
            memory: self.memory.unwrap_or(d.memory),
            disk: self.disk.unwrap_or(d.disk),
        }
    }
}

impl Overcommit {
    /// Checks the ratios the way the CRD schema does; `path` is where the block sits
    /// (`spec.overcommit`).
    pub(crate) fn check(&self, c: &mut Checker, path: &str) {
        let bounds = [
            ("cpu", self.cpu, OVERCOMMIT_CPU_MIN, OVERCOMMIT_CPU_MAX),
            (
                "memory",
                self.memory,
                OVERCOMMIT_MEMORY_MIN,
                OVERCOMMIT_MEMORY_MAX,
            ),
            ("disk", self.disk, OVERCOMMIT_DISK_MIN, OVERCOMMIT_DISK_MAX),
        ];
        for (field, ratio, min, max) in bounds {
            if let Some(ratio) = ratio {
                c.range(&format!("{path}.{field}"), ratio, min, max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_ratios_take_their_defaults() {
        assert_eq!(
            Overcommit::default().ratios(),
            OvercommitRatios {
                cpu: 4.0,
                memory: 1.0,
                disk: 1.0
            }
        );
        let o = Overcommit {
            cpu: Some(2.0),
            ..Default::default()
        };
        assert_eq!(o.ratios().cpu, 2.0);
        assert_eq!(o.ratios().memory, OVERCOMMIT_MEMORY_DEFAULT);
    }

    #[test]
    fn overcommit_bounds_name_their_field() {
        let with = |o: Overcommit| {
            let mut c = Checker::new();
            o.check(&mut c, "spec.overcommit");
            c.finish()
        };
        let cases = [
            (
                Overcommit {
                    cpu: Some(0.5),
                    ..Default::default()
                },
                "spec.overcommit.cpu: must be between 1 and 16, got 0.5",
            ),
            (
                Overcommit {
                    cpu: Some(17.0),
                    ..Default::default()
                },
                "spec.overcommit.cpu: must be between 1 and 16, got 17",
            ),
            (
                Overcommit {
                    memory: Some(0.99),
                    ..Default::default()
                },
                "spec.overcommit.memory: must be between 1 and 4, got 0.99",
            ),
            (
                Overcommit {
                    memory: Some(4.5),
                    ..Default::default()
                },
                "spec.overcommit.memory: must be between 1 and 4, got 4.5",
            ),
            (
                Overcommit {
                    disk: Some(5.0),
                    ..Default::default()
                },
                "spec.overcommit.disk: must be between 1 and 4, got 5",
            ),
            (
                Overcommit {
                    disk: Some(f64::NAN),
                    ..Default::default()
                },
                "spec.overcommit.disk: must be between 1 and 4, got NaN",
            ),
        ];
        for (o, msg) in cases {
            assert_eq!(with(o).unwrap_err().to_string(), msg);
        }
        let edges = Overcommit {
            cpu: Some(16.0),
            memory: Some(1.0),
            disk: Some(4.0),
        };
        assert_eq!(with(edges), Ok(()));
    }
}
