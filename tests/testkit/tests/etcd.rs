//! The throwaway etcd behaves like a real one: it serves, goes away on stop, keeps its data
//! across start_again, and leaves nothing behind on drop.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use yun_testkit::EtcdServer;

fn quick_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2))
}

async fn connect(server: &EtcdServer) -> Result<Client, etcd_client::Error> {
    Client::connect([server.endpoint()], Some(quick_options())).await
}

async fn get_value(server: &EtcdServer, key: &str) -> Result<Option<Vec<u8>>, String> {
    let attempt = async {
        let mut client = connect(server).await.map_err(|e| e.to_string())?;
        let response = client.get(key, None).await.map_err(|e| e.to_string())?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
}

fn runs_etcd(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| exe.ends_with("etcd"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_survives_stop_and_start_again() {
    let mut server = EtcdServer::start().expect("etcd starts");
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));

    let mut client = connect(&server).await.expect("client connects");
    client
        .put("/yun/test/key", "value-1", None)
        .await
        .unwrap_or_else(|e| panic!("put fails: {e}\n{}", server.log_tail()));
    assert_eq!(
        get_value(&server, "/yun/test/key").await,
        Ok(Some(b"value-1".to_vec()))
    );

    let pid = server.pid().expect("running etcd has a pid");
    server.stop().expect("etcd stops");
    assert_eq!(server.pid(), None);
    assert!(!runs_etcd(pid), "etcd pid {pid} still runs after stop");
    let while_down = get_value(&server, "/yun/test/key").await;
    assert!(
        while_down.is_err(),
        "etcd answered while stopped: {while_down:?}"
    );

    server.start_again().expect("etcd starts again");
    assert_eq!(
        get_value(&server, "/yun/test/key").await,
        Ok(Some(b"value-1".to_vec())),
        "value lost across restart; log:\n{}",
        server.log_tail()
    );
}

#[test]
fn drop_kills_etcd_and_removes_its_dir() {
    let server = EtcdServer::start().expect("etcd starts");
    let dir = server.dir().to_path_buf();
    let pid = server.pid().expect("running etcd has a pid");
    assert!(dir.join("data").is_dir(), "etcd data dir missing");
    assert!(runs_etcd(pid));
    assert!(server.log_tail().contains("ready to serve client requests"));

    drop(server);

    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    assert!(!runs_etcd(pid), "etcd pid {pid} still runs after drop");
}

#[test]
fn concurrent_servers_get_their_own_ports_and_dirs() {
    let first = EtcdServer::start().expect("first etcd starts");
    let second = EtcdServer::start().expect("second etcd starts");
    assert_ne!(first.endpoint(), second.endpoint());
    assert_ne!(first.dir(), second.dir());
}
