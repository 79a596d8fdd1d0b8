//! Reading the fleet bus directly with etcd-client, from synchronous tests. A secure etcd's
//! endpoint is registered with the root user's certificate ([`register_etcd_tls`]), so the
//! readers below keep taking just the endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use yun_fleet_etcd::BusTls;

/// Client certificates of the secure etcds this process started, by endpoint.
static ETCD_TLS: Mutex<BTreeMap<String, BusTls>> = Mutex::new(BTreeMap::new());

/// The readers reach `endpoint` with `tls` (etcd's root user: it reads every key).
pub fn register_etcd_tls(endpoint: &str, tls: BusTls) {
    ETCD_TLS
        .lock()
        .expect("etcd TLS registry")
        .insert(endpoint.to_owned(), tls);
}

async fn connect(endpoint: &str) -> etcd_client::Client {
    let tls = ETCD_TLS
        .lock()
        .expect("etcd TLS registry")
        .get(endpoint)
        .cloned();
    let options =
        tls.map(|t| etcd_client::ConnectOptions::new().with_tls(t.load().expect("etcd TLS files")));
    etcd_client::Client::connect([endpoint], options)
        .await
        .expect("connect to etcd")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// All keys under `prefix` (sorted).
pub fn etcd_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    block_on(async {
        let mut client = connect(endpoint).await;
        let resp = client
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
            .expect("etcd get");
        let mut keys: Vec<String> = resp
            .kvs()
            .iter()
            .map(|kv| kv.key_str().expect("utf-8 key").to_owned())
            .collect();
        keys.sort();
        keys
    })
}

/// The JSON value stored at `key`, `None` if absent.
pub fn etcd_get_json(endpoint: &str, key: &str) -> Option<serde_json::Value> {
    block_on(async {
        let mut client = connect(endpoint).await;
        let resp = client.get(key, None).await.expect("etcd get");
        resp.kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).expect("JSON value"))
    })
}

/// One change of a key: the revision it happened at, and the JSON value (`None`: deleted).
pub type KeyChange = (i64, Option<serde_json::Value>);

async fn changes_since(
    client: &mut etcd_client::Client,
    key: &str,
    start: i64,
    mut done: impl FnMut(&KeyChange) -> bool,
) -> Vec<KeyChange> {
    let mut stream = client
        .watch(
            key,
            Some(etcd_client::WatchOptions::new().with_start_revision(start)),
        )
        .await
        .expect("etcd watch");
    let mut out = Vec::new();
    while let Some(resp) = stream.message().await.expect("etcd watch message") {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let value = match ev.event_type() {
                etcd_client::EventType::Put => {
                    Some(serde_json::from_slice(kv.value()).expect("JSON value"))
                }
                etcd_client::EventType::Delete => None,
            };
            out.push((kv.mod_revision(), value));
            if done(out.last().expect("just pushed")) {
                return out;
            }
        }
    }
    panic!("etcd watch on {key} ended early");
}

/// Every value `key` has had since etcd started, oldest first, up to its current one (etcd
/// keeps the whole history: nothing compacts it in these tests). The key must exist now.
pub fn etcd_history(endpoint: &str, key: &str) -> Vec<KeyChange> {
    block_on(async {
        let mut client = connect(endpoint).await;
        let now = client.get(key, None).await.expect("etcd get");
        let last = now
            .kvs()
            .first()
            .unwrap_or_else(|| panic!("{key} does not exist"))
            .mod_revision();
        // A watch delivers events in revision order, so the history is complete once the
        // current value's revision arrived.
        changes_since(&mut client, key, 1, |(rev, _)| *rev >= last).await
    })
}

/// Waits until `key` holds a JSON value that satisfies `accept` (the current value is checked
/// first, then every write as etcd delivers it), and returns that value; `None` after
/// `timeout`. Reacts within milliseconds of the write, unlike polling.
pub fn etcd_wait_for(
    endpoint: &str,
    key: &str,
    timeout: std::time::Duration,
    mut accept: impl FnMut(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    block_on(async {
        let mut client = connect(endpoint).await;
        let now = client.get(key, None).await.expect("etcd get");
        let current = now
            .kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).expect("JSON value"));
        if current.as_ref().is_some_and(&mut accept) {
            return current;
        }
        let start = now.header().expect("response header").revision() + 1;
        let mut found = None;
        let watch = changes_since(&mut client, key, start, |(_, v)| {
            let hit = v.as_ref().is_some_and(&mut accept);
            if hit {
                found = v.clone();
            }
            hit
        });
        tokio::time::timeout(timeout, watch).await.ok()?;
        found
    })
}
