//! The placement pipeline: decide on the in-memory index, commit to etcd in batches.
//!
//! One task owns decisions, so two decisions never race inside this controller. Each request is
//! decided against the index and *reserved* there at once (the next decision sees it); the
//! batch then commits in one transaction guarded by every touched host's allocation revision.
//! A conflict (another writer, or a view behind etcd) undoes the reservations and retries each
//! request alone, refreshing the contested host from etcd, as Omega/Nomad optimistic placement.

use super::state::FleetIndex;
use super::sync::FleetIndexHandle;
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::{mpsc, oneshot};
use yun_fleet::{HostAllocation, Placement, SCHEMA_VERSION, VmDesired};
use yun_fleet_etcd::{BatchOutcome, BusError, FleetBus, HostCommit, MAX_BATCH, PlacementBatch};
use yun_placement::{NoFit, Request};

/// A single request gives up after this many lost races in a row.
const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    Placed { host: String },
    NoFit(NoFit),
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("placement of {uid} lost {attempts} races in a row; will retry")]
    Contended { uid: String, attempts: usize },
    #[error("the placement pipeline has stopped")]
    Stopped,
}

#[derive(Debug)]
struct Job {
    vm: VmDesired,
    request: Request,
    reply: oneshot::Sender<Result<Placed, ScheduleError>>,
}

/// Handle to the placement pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
}

impl Scheduler {
    /// Starts the pipeline task. It ends when every `Scheduler` clone is dropped.
    pub fn start(bus: FleetBus, index: FleetIndexHandle) -> Scheduler {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(bus, index, rx));
        Scheduler { tx }
    }

    /// Places `vm` (idempotent: a placed VM answers with its host).
    pub async fn place(&self, vm: VmDesired, request: Request) -> Result<Placed, ScheduleError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { vm, request, reply })
            .await
            .map_err(|_| ScheduleError::Stopped)?;
        rx.await.map_err(|_| ScheduleError::Stopped)?
    }
}

/// One decided-and-reserved job of the current batch.
struct Planned {
    job: Job,
    host: String,
}

/// Decides `job` on the index and reserves it there. `Err(job)` hands back a job that is
/// answered already or must be answered by the caller.
fn decide_and_reserve(index: &mut FleetIndex, job: &Job) -> Result<String, Placed> {
    if let Some(host) = index.engine().host_of(&job.vm.uid) {
        return Err(Placed::Placed {
            host: host.to_owned(),
        });
    }
    let host = match index.engine().decide(&job.request) {
        Ok(d) => d.host,
        Err(nofit) => return Err(Placed::NoFit(nofit)),
    };
    let sched = &job.request.scheduling;
    if let Err(e) = index
        .engine_mut()
        .assign(&job.vm.uid, &host, job.request.resources, sched)
    {
        tracing::error!(uid = %job.vm.uid, host = %host, error = %e, "reservation refused");
        return Err(Placed::NoFit(NoFit::default()));
    }
    Ok(host)
}

/// Whether the engine's allocation of the host (committed placements plus this batch's
/// reservations) equals the allocation the commit will write. The guard proves the record is
/// current; this proves the engine's fit check was made against that same record. They differ
/// only while the watch is behind our own view of etcd: then the commit waits and re-decides.
fn consistent(index: &FleetIndex, h: &HostCommit) -> bool {
    index
        .engine()
        .allocation(&h.host)
        .is_some_and(|a| a.total == h.new_alloc.total() && a.guaranteed == h.new_alloc.guaranteed)
}

fn batch_of(index: &FleetIndex, planned: &[Planned]) -> PlacementBatch {
    let mut hosts: BTreeMap<&str, (HostAllocation, i64)> = BTreeMap::new();
    let mut vms = Vec::with_capacity(planned.len());
    for p in planned {
        let entry = hosts
            .entry(p.host.as_str())
            .or_insert_with(|| index.alloc(&p.host));
        let req = &p.job.request;
        entry.0 = entry.0.with(req.resources, req.scheduling.qos);
        vms.push((
            p.job.vm.clone(),
            Placement {
                v: SCHEMA_VERSION,
                host: p.host.clone(),
                resources: req.resources,
                scheduling: req.scheduling.clone(),
            },
        ));
    }
    PlacementBatch {
        hosts: hosts
            .into_iter()
            .map(|(host, (new_alloc, alloc_revision))| HostCommit {
                host: host.to_owned(),
                alloc_revision,
                new_alloc,
            })
            .collect(),
        vms,
    }
}

async fn run(bus: FleetBus, index: FleetIndexHandle, mut rx: mpsc::Receiver<Job>) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(job) => queue.push_back(job),
                None => return,
            }
        }
        while queue.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => break,
            }
        }
        let mut planned = Vec::new();
        {
            let mut idx = index.lock();
            while planned.len() < MAX_BATCH {
                let Some(job) = queue.pop_front() else { break };
                match decide_and_reserve(&mut idx, &job) {
                    Ok(host) => planned.push(Planned { job, host }),
                    Err(answer) => {
                        let _ = job.reply.send(Ok(answer));
                    }
                }
            }
        }
        if planned.is_empty() {
            continue;
        }
        let (batch, agreed) = {
            let idx = index.lock();
            let batch = batch_of(&idx, &planned);
            let agreed = batch.hosts.iter().all(|h| consistent(&idx, h));
            (batch, agreed)
        };
        let outcome = if agreed {
            bus.commit_placements(&batch).await
        } else {
            Ok(BatchOutcome::Conflict)
        };
        match outcome {
            Ok(BatchOutcome::Committed { revision }) => {
                {
                    let mut idx = index.lock();
                    for h in &batch.hosts {
                        idx.committed(&h.host, h.new_alloc.clone(), revision);
                    }
                }
                for p in planned {
                    tracing::debug!(uid = %p.job.vm.uid, host = %p.host, "placed");
                    let _ = p.job.reply.send(Ok(Placed::Placed { host: p.host }));
                }
            }
            other => {
                if let Err(e) = &other {
                    tracing::warn!(error = %e, "batch placement failed; retrying one by one");
                }
                {
                    let mut idx = index.lock();
                    for p in &planned {
                        idx.engine_mut().unassign(&p.job.vm.uid);
                    }
                }
                for p in planned {
                    let result = place_alone(&bus, &index, &p.job).await;
                    let _ = p.job.reply.send(result);
                }
            }
        }
    }
}

/// Places one job with its own transaction, re-deciding after each lost race.
async fn place_alone(
    bus: &FleetBus,
    index: &FleetIndexHandle,
    job: &Job,
) -> Result<Placed, ScheduleError> {
    for _ in 0..MAX_ATTEMPTS {
        let (batch, host, agreed) = {
            let mut idx = index.lock();
            let host = match decide_and_reserve(&mut idx, job) {
                Ok(host) => host,
                Err(answer) => return Ok(answer),
            };
            let planned_alloc = idx.alloc(&host);
            let req = &job.request;
            let batch = PlacementBatch {
                hosts: vec![HostCommit {
                    host: host.clone(),
                    alloc_revision: planned_alloc.1,
                    new_alloc: planned_alloc.0.with(req.resources, req.scheduling.qos),
                }],
                vms: vec![(
                    job.vm.clone(),
                    Placement {
                        v: SCHEMA_VERSION,
                        host: host.clone(),
                        resources: req.resources,
                        scheduling: req.scheduling.clone(),
                    },
                )],
            };
            let agreed = consistent(&idx, &batch.hosts[0]);
            (batch, host, agreed)
        };
        if !agreed {
            index.lock().engine_mut().unassign(&job.vm.uid);
            tracing::debug!(uid = %job.vm.uid, host = %host, "index behind etcd; waiting for the watch");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let fresh = bus.host_alloc(&host).await?;
            index
                .lock()
                .committed(&host, fresh.value, fresh.mod_revision);
            continue;
        }
        let outcome = bus.commit_placements(&batch).await;
        let undo = || {
            index.lock().engine_mut().unassign(&job.vm.uid);
        };
        match outcome {
            Ok(BatchOutcome::Committed { revision }) => {
                let h = &batch.hosts[0];
                index
                    .lock()
                    .committed(&h.host, h.new_alloc.clone(), revision);
                return Ok(Placed::Placed { host });
            }
            Ok(BatchOutcome::Conflict) => {
                undo();
                if let Some(existing) = bus.placement(&job.vm.uid).await? {
                    // Placed already (by an earlier attempt whose answer was lost, or another
                    // controller): adopt it.
                    let p = existing.value;
                    let mut idx = index.lock();
                    let _ =
                        idx.engine_mut()
                            .assign(&job.vm.uid, &p.host, p.resources, &p.scheduling);
                    return Ok(Placed::Placed { host: p.host });
                }
                // Our view of the host was behind etcd: refresh it and decide again.
                let fresh = bus.host_alloc(&host).await?;
                index
                    .lock()
                    .committed(&host, fresh.value, fresh.mod_revision);
            }
            Err(e) => {
                undo();
                return Err(e.into());
            }
        }
    }
    Err(ScheduleError::Contended {
        uid: job.vm.uid.clone(),
        attempts: MAX_ATTEMPTS,
    })
}
