//! Change-to-notification latency with every object stored: one object's spec is replaced and
//! the clock runs until the observer reports that object at the written resourceVersion. The
//! observer is the store's watch (`watch_raw` from the list's revision), or the naive baseline,
//! a poller that lists the whole kind every interval and diffs resourceVersions.
//!
//! Through the watch, changes are made one at a time, so each figure is one change's latency,
//! not a queue's; the poller's changes overlap (see [`poll_latency`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, timeout};
use yun_store::{EtcdStore, StoreError, WatchEventType};

use crate::objects::{kind, name, resized};
use crate::stats::Rng;

/// Longest a watch may take to report one change before the run is called broken.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// An observer saw object `name` at `resource_version`, at `at`.
#[derive(Debug)]
struct Seen {
    name: String,
    resource_version: i64,
    at: Instant,
}

type Observer = JoinHandle<Result<(), StoreError>>;

fn seen(obj: &Value, at: Instant) -> Option<Seen> {
    let meta = obj.get("metadata")?;
    Some(Seen {
        name: meta.get("name")?.as_str()?.to_owned(),
        resource_version: meta.get("resourceVersion")?.as_str()?.parse().ok()?,
        at,
    })
}

/// Who to change next, and how: the changes stay distinct across both observers.
#[derive(Debug)]
pub struct Changes {
    rng: Rng,
    next: u64,
    objects: usize,
}

impl Changes {
    pub fn new(objects: usize) -> Changes {
        Changes {
            rng: Rng::new(0x5eed_f1a7_e0c1),
            next: 0,
            objects,
        }
    }

    /// Replaces a random object's spec; its name, the written revision, and when it started.
    async fn make(&mut self, store: &EtcdStore) -> anyhow::Result<(String, i64, Instant)> {
        let i = self.rng.below(self.objects);
        self.next += 1;
        let started = Instant::now();
        let written = store.replace_raw(&kind(), &resized(i, self.next)).await?;
        let rv = seen(&written, started)
            .context("the replaced object has no resourceVersion")?
            .resource_version;
        Ok((name(i), rv, started))
    }
}

/// One observer's per-change latencies, in ms.
#[derive(Debug)]
pub struct Latency {
    pub samples: Vec<f64>,
}

/// `samples` changes, each timed from the start of its `replace_raw` to the watch reporting it.
pub async fn watch_latency(
    store: &EtcdStore,
    resource_version: i64,
    samples: usize,
    changes: &mut Changes,
) -> anyhow::Result<Latency> {
    let mut watch = store.watch_raw(&kind(), None, resource_version).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut observer: Observer = tokio::spawn(async move {
        loop {
            let events = watch.next().await?;
            let at = Instant::now();
            for event in events.iter().filter(|e| e.kind == WatchEventType::Modified) {
                if let Some(s) = seen(&event.object, at) {
                    // The receiver is gone only when the measurement is over.
                    let _ = tx.send(s);
                }
            }
        }
    });
    let out = time_changes(store, samples, changes, &mut rx, &mut observer).await;
    observer.abort();
    out
}

/// The naive baseline: changes reported by a poller listing every `interval`. Each change
/// waits a random part of the interval first, so it lands anywhere in the poll cycle, and the
/// next one goes in without waiting for it to be found: a poll's latency is its cycle (a list
/// and an interval), whatever the change rate, so the samples cost a few cycles, not one each.
pub async fn poll_latency(
    store: &EtcdStore,
    interval: Duration,
    samples: usize,
    changes: &mut Changes,
) -> anyhow::Result<Latency> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (primed_tx, primed) = oneshot::channel();
    let mut observer: Observer = tokio::spawn(poller(store.clone(), interval, tx, primed_tx));
    // A change before the first list would be in the poller's baseline, never reported.
    let out = match primed.await {
        Ok(()) => overlapped(store, interval, samples, changes, &mut rx, &mut observer).await,
        Err(_) => Err(observer_error(&mut observer).await),
    };
    observer.abort();
    out
}

async fn overlapped(
    store: &EtcdStore,
    interval: Duration,
    samples: usize,
    changes: &mut Changes,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    observer: &mut Observer,
) -> anyhow::Result<Latency> {
    let phase = interval.as_millis().max(1) as usize;
    let mut jitter = Rng::new(0x0b5e_55ed);
    let mut pending: HashMap<String, (i64, Instant)> = HashMap::new();
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(jitter.below(phase) as u64)).await;
        let (name, rv, started) = changes.make(store).await?;
        pending.insert(name, (rv, started));
    }
    // Reports carry the poller's own timestamps: reading them late does not lengthen them.
    let limit = interval * 4 + Duration::from_secs(30);
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let s = match timeout(limit, rx.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(observer_error(observer).await),
            Err(_) => bail!("{} changes not reported within {limit:?}", pending.len()),
        };
        if let Some(&(rv, started)) = pending.get(&s.name)
            && s.resource_version >= rv
        {
            pending.remove(&s.name);
            out.push(s.at.duration_since(started).as_secs_f64() * 1e3);
        }
    }
    Ok(Latency { samples: out })
}

/// Lists every `interval` (back to back when a list takes longer) and reports each object whose
/// resourceVersion differs from the previous list's.
async fn poller(
    store: EtcdStore,
    interval: Duration,
    tx: mpsc::UnboundedSender<Seen>,
    primed: oneshot::Sender<()>,
) -> Result<(), StoreError> {
    let mut known: HashMap<String, i64> = HashMap::new();
    let mut primed = Some(primed);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let list = store.list_raw(&kind(), None).await?;
        for s in list.items.iter().filter_map(|o| seen(o, Instant::now())) {
            match known.get_mut(&s.name) {
                Some(rv) if *rv != s.resource_version => {
                    *rv = s.resource_version;
                    let _ = tx.send(s);
                }
                Some(_) => {}
                None => {
                    known.insert(s.name, s.resource_version);
                }
            }
        }
        if let Some(p) = primed.take() {
            let _ = p.send(());
        }
    }
}

/// Makes `samples` changes one after another, each waiting for the watch to report it.
async fn time_changes(
    store: &EtcdStore,
    samples: usize,
    changes: &mut Changes,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    observer: &mut Observer,
) -> anyhow::Result<Latency> {
    let limit = WATCH_TIMEOUT;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (name, rv, started) = changes.make(store).await?;
        let reported = timeout(limit, async {
            // Earlier reports (none are expected: one change at a time) are skipped.
            while let Some(s) = rx.recv().await {
                if s.name == name && s.resource_version >= rv {
                    return Some(s.at);
                }
            }
            None
        })
        .await;
        match reported {
            Ok(Some(at)) => out.push(at.duration_since(started).as_secs_f64() * 1e3),
            Ok(None) => return Err(observer_error(observer).await),
            Err(_) => bail!("{name} at revision {rv} was not reported within {limit:?}"),
        }
    }
    Ok(Latency { samples: out })
}

/// Why an observer stopped.
async fn observer_error(observer: &mut Observer) -> anyhow::Error {
    match observer.await {
        Ok(Err(e)) => anyhow::Error::new(e).context("the observer failed"),
        Ok(Ok(())) => anyhow::anyhow!("the observer stopped"),
        Err(e) => anyhow::Error::new(e).context("the observer panicked"),
    }
}
