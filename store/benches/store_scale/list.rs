//! A full list of the kind, as the controller does at start and on every resync: the store's
//! paged `list_raw` (pages of 2,000 keys, all at one revision), the typed `ObjectStore::list`,
//! and the naive baseline, one unpaged range read of the whole prefix then `serde_json` on each
//! value: with the gRPC client's default 4 MiB message limit, and with the limit raised.

use std::time::Instant;

use anyhow::ensure;
use etcd_client::{Client, GetOptions, GetResponse};
use serde_json::Value;
use yun_crds::VirtualMachine;
use yun_store::{EtcdStore, ObjectStore, keys};

use crate::objects::kind;
use crate::stats::{Spread, ms_since};

/// What the unpaged read did.
#[derive(Debug)]
pub enum Naive {
    /// It failed (etcd or the client refused the message); why.
    Failed(String),
    Took(Spread),
}

#[derive(Debug)]
pub struct ListFigures {
    pub raw: Spread,
    pub typed: Spread,
    /// With etcd-client's defaults, as a first attempt would be written.
    pub naive: Naive,
    /// With the client's decoding limit lifted: what the unpaged read costs when it works.
    pub naive_unlimited: Naive,
    /// All stored values together (NaN if the unlimited read failed).
    pub bytes_total: f64,
    /// The last raw list's revision: the watch starts here.
    pub resource_version: i64,
}

/// The typed list and the baselines cost as much as the raw list and are less in question:
/// fewer runs of them keep the bench's runtime down.
const OTHER_RUNS: usize = 3;

/// `runs` raw lists, and up to [`OTHER_RUNS`] of the typed and naive ones.
pub async fn measure(
    store: &EtcdStore,
    endpoint: &str,
    n: usize,
    runs: usize,
) -> anyhow::Result<ListFigures> {
    let kind = kind();
    let mut raw = Vec::with_capacity(runs);
    let mut resource_version = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let list = store.list_raw(&kind, None).await?;
        raw.push(ms_since(started));
        ensure!(list.items.len() == n, "listed {} of {n}", list.items.len());
        resource_version = list.resource_version;
    }
    let others = runs.min(OTHER_RUNS);
    let mut typed = Vec::with_capacity(others);
    for _ in 0..others {
        let started = Instant::now();
        let list = ObjectStore::list::<VirtualMachine>(store, None).await?;
        typed.push(ms_since(started));
        ensure!(
            list.items.len() == n,
            "listed {} typed of {n}",
            list.items.len()
        );
    }
    let client = Client::connect([endpoint], None).await?;
    let (naive, _) = naive_list(&client, n, others, None).await;
    let (naive_unlimited, bytes_total) = naive_list(&client, n, others, Some(usize::MAX)).await;
    Ok(ListFigures {
        raw: Spread::of(raw),
        typed: Spread::of(typed),
        naive,
        naive_unlimited,
        bytes_total,
        resource_version,
    })
}

/// One range read of the whole prefix, no limit, then each value decoded, `runs` times; the
/// first failure ends it (it would fail the same way again). Also the bytes read.
async fn naive_list(
    client: &Client,
    n: usize,
    runs: usize,
    max_message: Option<usize>,
) -> (Naive, f64) {
    let mut samples = Vec::with_capacity(runs);
    let mut bytes = f64::NAN;
    for _ in 0..runs {
        let started = Instant::now();
        match naive_once(client, max_message).await {
            Ok((items, read)) if items.len() == n => {
                samples.push(ms_since(started));
                bytes = read as f64;
            }
            Ok((items, _)) => {
                return (
                    Naive::Failed(format!("listed {} of {n}", items.len())),
                    bytes,
                );
            }
            Err(e) => return (Naive::Failed(format!("{e:#}")), bytes),
        }
    }
    (Naive::Took(Spread::of(samples)), bytes)
}

async fn naive_once(
    client: &Client,
    max_message: Option<usize>,
) -> anyhow::Result<(Vec<Value>, usize)> {
    let resp = whole_prefix(client, max_message).await?;
    let items = resp
        .kvs()
        .iter()
        .map(|kv| serde_json::from_slice(kv.value()))
        .collect::<Result<_, _>>()?;
    Ok((items, resp.kvs().iter().map(|kv| kv.value().len()).sum()))
}

async fn whole_prefix(client: &Client, max_message: Option<usize>) -> anyhow::Result<GetResponse> {
    let prefix = keys::objects_prefix(&kind(), None);
    let opts = Some(GetOptions::new().with_prefix());
    let mut kv = client.kv_client();
    if let Some(limit) = max_message {
        kv = kv.max_decoding_message_size(limit);
    }
    Ok(kv.get(prefix, opts).await?)
}
