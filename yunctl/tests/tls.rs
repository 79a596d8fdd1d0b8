//! yunctl against etcd as production runs it (TLS, client certificates, authentication on):
//! the `--etcd-ca/--etcd-cert/--etcd-key` flags and the config file's `ca/cert/key` reach the
//! store as the `yunctl` etcd user, and a key readable by others is refused without its
//! contents ever being printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use yun_fleet_etcd::FleetBus;
use yun_fleet_etcd::roles::{self, STORE_CLIENT_USER};
use yun_testkit::EtcdServer;

mod support;

use support::{Ctl, failed, image, one_line, succeeded};

fn provision_yunctl_user(etcd: &EtcdServer) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let root_tls = etcd.root_tls().unwrap();
        let root = FleetBus::connect(
            &[etcd.endpoint()],
            std::time::Duration::from_secs(5),
            Some(&root_tls),
        )
        .await
        .unwrap();
        roles::ensure_store_client_user(&root, STORE_CLIENT_USER)
            .await
            .unwrap();
    });
}

#[test]
fn tls_settings_reach_a_secure_etcd_as_the_yunctl_user() {
    let etcd = EtcdServer::start_secure().expect("secure etcd starts");
    provision_yunctl_user(&etcd);
    let tls = etcd.tls_for(STORE_CLIENT_USER).unwrap();
    let ctl = Ctl {
        endpoint: etcd.endpoint(),
        home: tempfile::tempdir().unwrap(),
    };
    let manifest = ctl.file("image.yaml", &image("tls"));
    let flags = [
        "--etcd-ca",
        tls.ca.to_str().unwrap(),
        "--etcd-cert",
        tls.cert.to_str().unwrap(),
        "--etcd-key",
        tls.key.to_str().unwrap(),
    ];
    let mut args = vec!["apply", "-f", manifest.to_str().unwrap()];
    args.extend(flags);
    assert_eq!(ctl.ok(&args), "vmimage.yun.dev/yun-test created\n");

    let config = ctl.file(
        "yunctl.yaml",
        &format!(
            "endpoints: [{}]\nca: {}\ncert: {}\nkey: {}\nnamespace: tls\n",
            etcd.endpoint(),
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        ),
    );
    let mut c = ctl.command();
    c.arg("--config")
        .arg(&config)
        .args(["get", "vmi", "-o", "name"]);
    let listed = succeeded(c.output().unwrap(), &["get (config)"]);
    assert_eq!(listed, "vmimage.yun.dev/yun-test\n");

    // Without a certificate the https endpoint is refused before anything is sent.
    let stderr = ctl.fails(&["get", "vmi", "-n", "tls"]);
    assert!(
        one_line(&stderr).contains("no client certificate"),
        "{stderr}"
    );

    // A key others can read is refused, and its contents appear nowhere.
    let open_key = ctl.home.path().join("open-key.pem");
    std::fs::copy(&tls.key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = vec!["get", "vmi", "-n", "tls"];
    args.extend(&flags[..4]);
    args.extend(["--etcd-key", open_key.to_str().unwrap()]);
    let out = ctl.run(&args);
    let key_text = std::fs::read_to_string(&tls.key).unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!printed.contains(key_body), "{printed}");
    let stderr = failed(out, &args);
    assert!(
        one_line(&stderr).contains("readable by group or others"),
        "{stderr}"
    );
}
