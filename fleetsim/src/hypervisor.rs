//! The fake hypervisor of one simulated host: a table of VMs that reach the phase their run
//! strategy asks for `boot_delay` after being told, and report it through the agent's reporter.
//!
//! Like libvirt under the real agent, the table outlives fleet-bus sessions: a relist finds the
//! VMs still there and re-creates nothing. A VM that is unknown but whose last observation on
//! the bus already matches what is desired is adopted as is (the simulator process restarted;
//! its guests "kept running").

use crate::stats::Counters;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use yun_agent::reporter::Report;
use yun_fleet::{RunStrategy, SCHEMA_VERSION, VmDesired, VmObserved, VmPhase};

#[derive(Debug)]
struct SimVm {
    generation: u64,
    /// `Running` or `Stopped`, from the run strategy.
    target: VmPhase,
    /// `Pending` until the first transition completes.
    phase: VmPhase,
    started_at: Option<jiff::Timestamp>,
    /// Bumped by every scheduled transition; a transition that is no longer the latest is void.
    op: u32,
    transition: Option<AbortHandle>,
}

type Table = HashMap<String, SimVm>;

/// One host's VMs. Cheap to clone (shared with the VMs' transition timers).
#[derive(Debug, Clone)]
pub(crate) struct FakeHypervisor {
    vms: Arc<Mutex<Table>>,
    counters: Arc<Counters>,
    boot_delay: Duration,
}

fn target_of(strategy: RunStrategy) -> VmPhase {
    match strategy {
        RunStrategy::Always => VmPhase::Running,
        RunStrategy::Halted => VmPhase::Stopped,
    }
}

fn running(phase: VmPhase) -> i64 {
    i64::from(phase == VmPhase::Running)
}

impl FakeHypervisor {
    pub(crate) fn new(counters: Arc<Counters>, boot_delay: Duration) -> FakeHypervisor {
        FakeHypervisor {
            vms: Arc::default(),
            counters,
            boot_delay,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters more than losing the whole simulated host would.
        self.vms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn uids(&self) -> Vec<String> {
        self.table().keys().cloned().collect()
    }

    /// Makes `vm` what the host runs, writing observations to `reports`.
    pub(crate) fn apply(
        &self,
        vm: &VmDesired,
        observed: Option<&VmObserved>,
        reports: &UnboundedSender<Report>,
    ) {
        let target = target_of(vm.run_strategy);
        let mut table = self.table();
        let Some(cur) = table.get_mut(&vm.uid) else {
            let adopted = observed
                .filter(|o| o.observed_generation == vm.generation && o.phase == target)
                .map(|o| o.started_at.as_deref().and_then(|s| s.parse().ok()));
            Counters::add(&self.counters.vms, 1);
            let mut new = SimVm {
                generation: vm.generation,
                target,
                phase: VmPhase::Pending,
                started_at: None,
                op: 0,
                transition: None,
            };
            match adopted {
                Some(started_at) => {
                    new.phase = target;
                    new.started_at = started_at;
                    Counters::add(&self.counters.vms_running, running(target));
                }
                None => self.schedule(&vm.uid, &mut new, reports),
            }
            table.insert(vm.uid.clone(), new);
            return;
        };
        if cur.generation == vm.generation && cur.target == target {
            // Already applied. On a relist, repair an observation that does not match (lost
            // write, or written by someone else), but only for a settled VM.
            let stale = observed
                .is_some_and(|o| o.phase != cur.phase || o.observed_generation != cur.generation);
            if cur.transition.is_none() && stale {
                self.report(&vm.uid, cur, reports);
            }
            return;
        }
        cur.generation = vm.generation;
        cur.target = target;
        if cur.phase == target {
            // A spec change that needs no power change: acknowledge the new generation now.
            if let Some(t) = cur.transition.take() {
                t.abort();
            }
            cur.op = cur.op.wrapping_add(1);
            self.report(&vm.uid, cur, reports);
        } else {
            self.schedule(&vm.uid, cur, reports);
        }
    }

    /// Forgets the VM and deletes its observation (sent even for a VM this host never knew, so
    /// a stale record can never block the release of its resources).
    pub(crate) fn remove(&self, uid: &str, reports: &UnboundedSender<Report>) {
        if let Some(vm) = self.table().remove(uid) {
            self.forget(vm);
        }
        Counters::inc(&self.counters.status_reports);
        let _ = reports.send(Report::Gone(uid.to_owned()));
    }

    /// The host is gone (killed or shut down): every VM goes with it, nothing is reported.
    pub(crate) fn clear(&self) {
        let vms: Vec<SimVm> = self.table().drain().map(|(_, vm)| vm).collect();
        for vm in vms {
            self.forget(vm);
        }
    }

    fn forget(&self, vm: SimVm) {
        if let Some(t) = vm.transition {
            t.abort();
        }
        Counters::add(&self.counters.vms, -1);
        Counters::add(&self.counters.vms_running, -running(vm.phase));
    }

    fn schedule(&self, uid: &str, vm: &mut SimVm, reports: &UnboundedSender<Report>) {
        if let Some(t) = vm.transition.take() {
            t.abort();
        }
        vm.op = vm.op.wrapping_add(1);
        let (hv, uid, reports, op) = (self.clone(), uid.to_owned(), reports.clone(), vm.op);
        let task = tokio::spawn(async move {
            tokio::time::sleep(hv.boot_delay).await;
            hv.settle(&uid, op, &reports);
        });
        vm.transition = Some(task.abort_handle());
    }

    /// The transition `op` completed: the VM is now in its target phase.
    fn settle(&self, uid: &str, op: u32, reports: &UnboundedSender<Report>) {
        let mut table = self.table();
        let Some(vm) = table.get_mut(uid).filter(|vm| vm.op == op) else {
            return;
        };
        vm.transition = None;
        Counters::add(
            &self.counters.vms_running,
            running(vm.target) - running(vm.phase),
        );
        vm.phase = vm.target;
        vm.started_at = match vm.phase {
            VmPhase::Running => Some(jiff::Timestamp::now()),
            _ => None,
        };
        self.report(uid, vm, reports);
    }

    fn report(&self, uid: &str, vm: &SimVm, reports: &UnboundedSender<Report>) {
        Counters::inc(&self.counters.status_reports);
        let _ = reports.send(Report::Observed(VmObserved {
            v: SCHEMA_VERSION,
            uid: uid.to_owned(),
            phase: vm.phase,
            observed_generation: vm.generation,
            domain_uuid: None,
            started_at: vm.started_at.map(|t| t.to_string()),
            message: None,
            updated_at: jiff::Timestamp::now().to_string(),
            identity_generation: None,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use yun_fleet::{Artifact, DiskFormat, ImageSpec, Resources};

    fn desired(generation: u64, run_strategy: RunStrategy) -> VmDesired {
        VmDesired {
            v: SCHEMA_VERSION,
            uid: "vm-1".into(),
            namespace: "default".into(),
            name: "vm-1".into(),
            generation,
            resources: Resources {
                cpus: 1,
                memory_mib: 512,
                disk_gib: 1,
            },
            image: ImageSpec {
                name: "default/img".into(),
                disk: Artifact {
                    source: "file:///x".into(),
                    sha256: "0".repeat(64),
                },
                format: DiskFormat::Qcow2,
                kernel: None,
                initrd: None,
                cmdline: None,
            },
            hostname: "vm-1".into(),
            user_data: None,
            run_strategy,
            nics: Vec::new(),
            security_groups: Vec::new(),
            volumes: Vec::new(),
            hold: None,
            identity: None,
        }
    }

    fn observed(report: Report) -> VmObserved {
        match report {
            Report::Observed(o) => o,
            other => panic!("expected an observation, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn boots_after_the_delay_and_reapplying_changes_nothing() {
        let counters = Arc::new(Counters::default());
        let hv = FakeHypervisor::new(counters.clone(), Duration::from_secs(2));
        let (tx, mut rx) = mpsc::unbounded_channel();
        hv.apply(&desired(1, RunStrategy::Always), None, &tx);
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert!(
            rx.try_recv().is_err(),
            "nothing is reported before the boot delay"
        );
        let running = observed(rx.recv().await.unwrap());
        assert_eq!(
            (running.phase, running.observed_generation),
            (VmPhase::Running, 1)
        );
        assert!(running.started_at.is_some());
        assert_eq!(
            counters
                .vms_running
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );

        // A relist that finds the VM as observed: no new report.
        hv.apply(&desired(1, RunStrategy::Always), Some(&running), &tx);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(rx.try_recv().is_err());

        // A spec change without a power change keeps the VM and its start time.
        hv.apply(&desired(2, RunStrategy::Always), None, &tx);
        let bumped = observed(rx.recv().await.unwrap());
        assert_eq!(bumped.observed_generation, 2);
        assert_eq!(bumped.started_at, running.started_at);
    }

    #[tokio::test(start_paused = true)]
    async fn halting_stops_and_removing_reports_gone() {
        let counters = Arc::new(Counters::default());
        let hv = FakeHypervisor::new(counters.clone(), Duration::from_secs(1));
        let (tx, mut rx) = mpsc::unbounded_channel();
        hv.apply(&desired(1, RunStrategy::Always), None, &tx);
        // Halted before the boot completed: the boot is void, the VM ends Stopped.
        hv.apply(&desired(2, RunStrategy::Halted), None, &tx);
        let stopped = observed(rx.recv().await.unwrap());
        assert_eq!(
            (stopped.phase, stopped.observed_generation),
            (VmPhase::Stopped, 2)
        );
        assert_eq!(stopped.started_at, None);
        hv.remove("vm-1", &tx);
        assert_eq!(rx.recv().await.unwrap(), Report::Gone("vm-1".into()));
        assert!(hv.uids().is_empty());
        assert_eq!(counters.vms.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn adopts_a_vm_whose_observation_matches() {
        let counters = Arc::new(Counters::default());
        let hv = FakeHypervisor::new(counters.clone(), Duration::from_secs(1));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let last = VmObserved {
            v: SCHEMA_VERSION,
            uid: "vm-1".into(),
            phase: VmPhase::Running,
            observed_generation: 1,
            domain_uuid: None,
            started_at: Some("2024-01-01T00:00:00Z".into()),
            message: None,
            updated_at: "2024-01-01T00:00:00Z".into(),
            identity_generation: None,
        };
        hv.apply(&desired(1, RunStrategy::Always), Some(&last), &tx);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(rx.try_recv().is_err(), "an adopted VM is not booted again");
        assert_eq!(
            counters
                .vms_running
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
