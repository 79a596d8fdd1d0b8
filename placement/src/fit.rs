//! The QoS arithmetic of one resource dimension (pure integer/float math, no engine state).
//!
//! For a dimension with capacity `C`, overcommit ratio `r`, Guaranteed allocation `G` and
//! Burstable allocation `B`:
//! - a Guaranteed request `x` fits iff `G + x ≤ C` and `B ≤ ⌊(C − G − x)·r⌋`;
//! - a Burstable request `x` fits iff `B + x ≤ ⌊(C − G)·r⌋`.

use yun_fleet::{Qos, Resources};

use crate::model::{Allocation, Ratios};

/// `⌊amount·ratio⌋`, saturating at `u64::MAX` (`as` saturates, and `ratio` is finite, ≥ 0).
pub(crate) fn scaled(amount: u64, ratio: f64) -> u64 {
    (amount as f64 * ratio).floor() as u64
}

/// One resource dimension of one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dim {
    pub capacity: u64,
    pub ratio: f64,
    pub guaranteed: u64,
    pub burstable: u64,
}

impl Dim {
    /// What Guaranteed VMs leave of the physical capacity.
    fn unreserved(&self) -> u64 {
        self.capacity.saturating_sub(self.guaranteed)
    }

    /// Whether `x` more of class `qos` fits.
    pub fn fits(&self, qos: Qos, x: u64) -> bool {
        match qos {
            Qos::Guaranteed => match self.guaranteed.checked_add(x) {
                Some(g) if g <= self.capacity => {
                    self.burstable <= scaled(self.capacity - g, self.ratio)
                }
                _ => false,
            },
            Qos::Burstable => self
                .burstable
                .checked_add(x)
                .is_some_and(|b| b <= scaled(self.unreserved(), self.ratio)),
        }
    }

    /// The largest `x` of class `qos` that fits, or 0 when nothing does. Exact: for every `x`,
    /// `fits(qos, x)` implies `x ≤ headroom(qos)` (the capacity index relies on it).
    pub fn headroom(&self, qos: Qos) -> u64 {
        let room = self.unreserved();
        match qos {
            Qos::Burstable => scaled(room, self.ratio).saturating_sub(self.burstable),
            Qos::Guaranteed => match self.min_backing() {
                Some(m) if m <= room => room - m,
                _ => 0,
            },
        }
    }

    /// The smallest unreserved amount `m` with `⌊m·r⌋ ≥ B`: what a Guaranteed placement must
    /// leave for the Burstable VMs already here. `None` when no amount up to the capacity does.
    fn min_backing(&self) -> Option<u64> {
        let (b, r) = (self.burstable, self.ratio);
        if b == 0 {
            return Some(0);
        }
        if r <= 0.0 {
            return None;
        }
        let limit = self.unreserved();
        // The float quotient is within a step or two of the answer; walk to the exact one.
        let mut m = ((b as f64) / r).ceil().min(limit as f64) as u64;
        for _ in 0..4 {
            if m > 0 && scaled(m - 1, r) >= b {
                m -= 1;
            }
        }
        for _ in 0..4 {
            if scaled(m, r) >= b {
                return Some(m);
            }
            if m >= limit {
                return None;
            }
            m += 1;
        }
        // Still short after the float estimate plus a few steps: only possible near the top of
        // the u64 range, where treating the host as full is the safe answer.
        None
    }

    /// Share of the physical capacity in use with `x` more of class `qos`, Burstable
    /// allocations weighted by `1/r` (what they would use if every one were busy at once,
    /// spread over the overcommit). Clamped to `[0, 1]`; `None` for a zero-capacity dimension.
    pub fn used_share_after(&self, qos: Qos, x: u64) -> Option<f64> {
        if self.capacity == 0 {
            return None;
        }
        let (mut g, mut b) = (self.guaranteed as f64, self.burstable as f64);
        match qos {
            Qos::Guaranteed => g += x as f64,
            Qos::Burstable => b += x as f64,
        }
        let burst = if self.ratio > 0.0 {
            b / self.ratio
        } else if b > 0.0 {
            self.capacity as f64
        } else {
            0.0
        };
        Some(((g + burst) / self.capacity as f64).clamp(0.0, 1.0))
    }
}

/// The three dimensions of a host, in reporting order (cpu, memory, disk).
pub(crate) fn dims(capacity: Resources, ratios: Ratios, alloc: &Allocation) -> [Dim; 3] {
    let burst = alloc.burstable();
    [
        Dim {
            capacity: capacity.cpus.into(),
            ratio: ratios.cpu,
            guaranteed: alloc.guaranteed.cpus.into(),
            burstable: burst.cpus.into(),
        },
        Dim {
            capacity: capacity.memory_mib,
            ratio: ratios.memory,
            guaranteed: alloc.guaranteed.memory_mib,
            burstable: burst.memory_mib,
        },
        Dim {
            capacity: capacity.disk_gib,
            ratio: ratios.disk,
            guaranteed: alloc.guaranteed.disk_gib,
            burstable: burst.disk_gib,
        },
    ]
}

/// A request's amounts in the order of [`dims`].
pub(crate) fn amounts(r: Resources) -> [u64; 3] {
    [r.cpus.into(), r.memory_mib, r.disk_gib]
}

/// The first dimension (0 cpu, 1 memory, 2 disk) in which `x` does not fit, if any.
pub(crate) fn first_short_dim(dims: &[Dim; 3], qos: Qos, x: Resources) -> Option<usize> {
    let want = amounts(x);
    (0..3).find(|&d| !dims[d].fits(qos, want[d]))
}

/// Dominant share of the host in use after placing `x`: the policy scores' common measure.
pub(crate) fn dominant_share_after(dims: &[Dim; 3], qos: Qos, x: Resources) -> f64 {
    let want = amounts(x);
    (0..3)
        .filter_map(|d| dims[d].used_share_after(qos, want[d]))
        .fold(None, |acc: Option<f64>, s| {
            Some(acc.map_or(s, |a| a.max(s)))
        })
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(capacity: u64, ratio: f64, guaranteed: u64, burstable: u64) -> Dim {
        Dim {
            capacity,
            ratio,
            guaranteed,
            burstable,
        }
    }

    #[test]
    fn guaranteed_is_never_overcommitted() {
        let d = dim(8, 4.0, 6, 0);
        assert!(d.fits(Qos::Guaranteed, 2));
        assert!(!d.fits(Qos::Guaranteed, 3));
        assert_eq!(d.headroom(Qos::Guaranteed), 2);
    }

    #[test]
    fn burstable_shares_what_guaranteed_leaves_times_the_ratio() {
        // (8 − 6)·4 = 8 burstable units.
        let d = dim(8, 4.0, 6, 5);
        assert!(d.fits(Qos::Burstable, 3));
        assert!(!d.fits(Qos::Burstable, 4));
        assert_eq!(d.headroom(Qos::Burstable), 3);
    }

    #[test]
    fn guaranteed_must_leave_backing_for_existing_burstable() {
        // 10 burstable at ratio 4 need ⌈10/4⌉ = 3 unreserved: a Guaranteed VM may take 16 − 3.
        let d = dim(16, 4.0, 0, 10);
        assert!(d.fits(Qos::Guaranteed, 13));
        assert!(!d.fits(Qos::Guaranteed, 14));
        assert_eq!(d.headroom(Qos::Guaranteed), 13);
    }

    #[test]
    fn floor_of_fractional_ratio_products() {
        // ⌊3·1.5⌋ = 4: four burstable units, not 4.5.
        let d = dim(3, 1.5, 0, 0);
        assert!(d.fits(Qos::Burstable, 4));
        assert!(!d.fits(Qos::Burstable, 5));
        // With 4 burstable, ⌊(3 − x)·1.5⌋ ≥ 4 needs 3 − x ≥ 3: no Guaranteed room at all.
        let d = dim(3, 1.5, 0, 4);
        assert!(d.fits(Qos::Guaranteed, 0));
        assert!(!d.fits(Qos::Guaranteed, 1));
        assert_eq!(d.headroom(Qos::Guaranteed), 0);
    }

    #[test]
    fn zero_ratio_admits_no_burstable() {
        let d = dim(8, 0.0, 0, 0);
        assert!(d.fits(Qos::Burstable, 0));
        assert!(!d.fits(Qos::Burstable, 1));
        assert!(d.fits(Qos::Guaranteed, 8));
        let d = dim(8, 0.0, 0, 1);
        assert!(!d.fits(Qos::Guaranteed, 0));
    }

    #[test]
    fn an_overcommitted_host_takes_nothing_and_saturates() {
        // Capacity shrank under existing allocations.
        let d = dim(4, 1.0, 6, 3);
        assert!(!d.fits(Qos::Guaranteed, 0));
        assert!(!d.fits(Qos::Burstable, 0));
        assert_eq!(d.headroom(Qos::Guaranteed), 0);
        assert_eq!(d.headroom(Qos::Burstable), 0);
        let huge = dim(u64::MAX, 4.0, u64::MAX - 1, 0);
        assert!(!huge.fits(Qos::Guaranteed, 2));
        assert!(!huge.fits(Qos::Burstable, u64::MAX));
    }

    #[test]
    fn headroom_is_exactly_the_largest_fitting_amount() {
        for cap in 0..14u64 {
            for &ratio in &[0.0, 0.5, 1.0, 1.5, 2.3, 4.0] {
                for g in 0..=cap + 1 {
                    for b in 0..20u64 {
                        let d = dim(cap, ratio, g, b);
                        for qos in [Qos::Guaranteed, Qos::Burstable] {
                            let largest = (0..60u64).filter(|&x| d.fits(qos, x)).max();
                            let h = d.headroom(qos);
                            match largest {
                                Some(l) => assert_eq!(h, l, "{d:?} {qos:?}"),
                                None => assert_eq!(h, 0, "{d:?} {qos:?}"),
                            }
                            // Fitting is monotone: everything below the headroom fits too.
                            if largest.is_some() {
                                assert!((0..=h).all(|x| d.fits(qos, x)), "{d:?} {qos:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn used_share_weights_burstable_by_the_ratio() {
        let d = dim(8, 4.0, 2, 8);
        // (2 + 8/4) / 8 = 0.5; one more guaranteed cpu: 5/8.
        assert_eq!(d.used_share_after(Qos::Burstable, 0), Some(0.5));
        assert_eq!(d.used_share_after(Qos::Guaranteed, 1), Some(0.625));
        assert_eq!(dim(0, 1.0, 0, 0).used_share_after(Qos::Burstable, 1), None);
        let ds = [dim(8, 4.0, 2, 8), dim(100, 1.0, 90, 0), dim(0, 1.0, 0, 0)];
        let x = Resources {
            cpus: 0,
            memory_mib: 5,
            disk_gib: 0,
        };
        assert_eq!(dominant_share_after(&ds, Qos::Guaranteed, x), 0.95);
        assert_eq!(first_short_dim(&ds, Qos::Guaranteed, x), None);
        let x = Resources {
            memory_mib: 11,
            ..x
        };
        assert_eq!(first_short_dim(&ds, Qos::Guaranteed, x), Some(1));
    }
}
