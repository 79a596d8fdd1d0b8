//! Reading the fleet bus directly with etcd-client, from synchronous tests.

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
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .expect("connect to etcd");
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
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .expect("connect to etcd");
        let resp = client.get(key, None).await.expect("etcd get");
        resp.kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).expect("JSON value"))
    })
}
