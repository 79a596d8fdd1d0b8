//! cloud-init NoCloud seed: the files (pure rendering) and the `cidata` ISO holding them. A VM
//! with a Keystone identity also gets `vendor-data` and its `clouds.yaml` (see
//! [`crate::guest_identity`]), so the ISO is readable by its owner only.

use crate::guest_identity::{IdentitySeed, SEED_CLOUDS_FILE};
use std::fs;
use std::io;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use yun_fleet::NicRecord;

/// File name of the seed ISO inside a VM's directory.
pub const SEED_ISO: &str = "seed.iso";

/// User data given to a VM that has none: a valid, empty cloud-config.
pub const DEFAULT_USER_DATA: &str = "#cloud-config\n{}\n";

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{path}: {action}: {err}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        err: io::Error,
    },
    #[error("genisoimage for {path}: {message}")]
    Genisoimage { path: PathBuf, message: String },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> SeedError {
    let path = path.to_path_buf();
    move |err| SeedError::Io { path, action, err }
}

/// The contents of the NoCloud files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
    /// The VM's Keystone identity: `vendor-data` and [`SEED_CLOUDS_FILE`].
    pub identity: Option<IdentitySeed>,
}

impl SeedFiles {
    /// The seed of one VM; `user_data` is passed through verbatim. `nics` (guest order) get
    /// static addresses; a VM without NICs gets DHCP on whatever Ethernet it has.
    pub fn for_vm(
        uid: &str,
        hostname: &str,
        user_data: Option<&str>,
        nics: &[NicRecord],
    ) -> SeedFiles {
        SeedFiles {
            user_data: user_data.unwrap_or(DEFAULT_USER_DATA).to_owned(),
            meta_data: render_meta_data(uid, hostname),
            network_config: if nics.is_empty() {
                render_dhcp_network_config()
            } else {
                render_static_network_config(nics)
            },
            identity: None,
        }
    }
}

/// A YAML double-quoted scalar: safe whatever the value holds (the hostname is validated as a
/// DNS label upstream, but a quoted value cannot turn into YAML structure either way).
fn yaml_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// NoCloud `meta-data`. cloud-init re-runs its per-instance modules when `instance-id`
/// changes, so it is the VM's uid: stable across reboots and agent restarts.
pub fn render_meta_data(uid: &str, hostname: &str) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_quoted(uid),
        yaml_quoted(hostname)
    )
}

/// NoCloud `network-config` (netplan version 2): DHCPv4 on every Ethernet NIC named `e*`
/// (`ens3`, `enp1s0`, `eth0`), whatever the bus position the host gave it.
pub fn render_dhcp_network_config() -> String {
    "version: 2\n\
     ethernets:\n  \
       all-ethernet:\n    \
         match:\n      \
           name: \"e*\"\n    \
         dhcp4: true\n"
        .to_owned()
}

/// NoCloud `network-config` (netplan version 2) for tenant NICs: each matched by MAC and
/// renamed `eth<i>` in guest order, with its static address and MTU; the default route goes
/// via the gateway of the first NIC that has one. Every string is double-quoted: YAML 1.1 reads
/// an all-digit MAC such as `52:54:00:12:34:56` as a sexagesimal number otherwise.
///
/// The exact layout (one key per line, this indentation, flow-style `addresses`) is also what
/// the test template's guest parses (images/test-template/guest/rootfs/etc/yun/net).
pub fn render_static_network_config(nics: &[NicRecord]) -> String {
    let mut out = String::from("version: 2\nethernets:\n");
    let mut default_route = true;
    for (i, nic) in nics.iter().enumerate() {
        let name = format!("eth{i}");
        out.push_str(&format!("  {}:\n", yaml_quoted(&name)));
        out.push_str("    match:\n");
        out.push_str(&format!(
            "      macaddress: {}\n",
            yaml_quoted(&nic.mac.to_ascii_lowercase())
        ));
        out.push_str(&format!("    set-name: {}\n", yaml_quoted(&name)));
        out.push_str(&format!(
            "    addresses: [{}]\n",
            yaml_quoted(&format!("{}/{}", nic.ip, nic.prefix))
        ));
        out.push_str(&format!("    mtu: {}\n", nic.mtu));
        if let Some(gateway) = nic.gateway.filter(|_| default_route) {
            default_route = false;
            // 0.0.0.0/0 rather than `default`: older cloud-init releases only take a prefix.
            out.push_str("    routes:\n");
            out.push_str(&format!("      - to: {}\n", yaml_quoted("0.0.0.0/0")));
            out.push_str(&format!(
                "        via: {}\n",
                yaml_quoted(&gateway.to_string())
            ));
        }
    }
    out
}

/// Writes `<dir>/seed.iso` (volume label `cidata`, mode 0600) holding `files`, replacing any
/// earlier one atomically: the ISO is built under a temporary name, then renamed (QEMU keeps
/// the file it opened, so a running guest goes on seeing the old seed). Blocks (runs
/// `genisoimage`): call it on tokio's blocking pool.
pub fn write_seed_iso(dir: &Path, files: &SeedFiles) -> Result<PathBuf, SeedError> {
    let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{}-{n}", std::process::id());
    // The files and the ISO under construction stay in a directory only the agent can enter:
    // the VM directory is world-traversable, and they may hold a credential.
    let staging = dir.join(format!(".seed-staging-{tag}"));
    let tmp_iso = staging.join("seed.iso");
    let iso = dir.join(SEED_ISO);
    let result = build(&staging, &tmp_iso, &iso, files);
    // Nothing of a failed (or finished) build stays behind.
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| iso)
}

fn write_private(path: &Path, contents: &str) -> Result<(), SeedError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(io_err(path, "write"))
}

fn build(staging: &Path, tmp_iso: &Path, iso: &Path, files: &SeedFiles) -> Result<(), SeedError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(io_err(staging, "create staging directory"))?;
    let mut entries = vec![
        ("user-data", files.user_data.as_str()),
        ("meta-data", files.meta_data.as_str()),
        ("network-config", files.network_config.as_str()),
    ];
    if let Some(identity) = &files.identity {
        entries.push(("vendor-data", identity.vendor_data.as_str()));
        entries.push((SEED_CLOUDS_FILE, identity.clouds_yaml.as_str()));
    }
    for (name, contents) in &entries {
        write_private(&staging.join(name), contents)?;
    }
    let out = Command::new("genisoimage")
        .current_dir(staging)
        .args(["-quiet", "-output"])
        .arg(tmp_iso)
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .args(entries.iter().map(|(name, _)| name))
        .output()
        .map_err(|e| SeedError::Genisoimage {
            path: iso.to_path_buf(),
            message: format!("cannot run genisoimage: {e}"),
        })?;
    if !out.status.success() {
        return Err(SeedError::Genisoimage {
            path: iso.to_path_buf(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    // Owner only: it may hold a credential. libvirt's dynamic ownership hands the file to the
    // QEMU user when the domain starts.
    fs::set_permissions(tmp_iso, fs::Permissions::from_mode(0o600))
        .map_err(io_err(tmp_iso, "set permissions"))?;
    fs::rename(tmp_iso, iso).map_err(io_err(iso, "rename into place"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn meta_data_is_quoted_yaml() {
        assert_eq!(
            render_meta_data("0b6c-11", "web-0"),
            "instance-id: \"0b6c-11\"\nlocal-hostname: \"web-0\"\n"
        );
        // Nothing a value holds can end the scalar or start a new key.
        let md = render_meta_data("a\"b", "x\nevil: 1\\");
        assert_eq!(
            md,
            "instance-id: \"a\\\"b\"\nlocal-hostname: \"x\\nevil: 1\\\\\"\n"
        );
        assert_eq!(md.lines().count(), 2);
    }

    fn nic(mac: &str, ip: [u8; 4], prefix: u8, gateway: Option<[u8; 4]>, mtu: u32) -> NicRecord {
        NicRecord {
            network: "team-a/net".into(),
            ifname: "yt0123456789abc".into(),
            bridge: "yb0123456789abc".into(),
            mac: mac.into(),
            ip: ip.into(),
            prefix,
            gateway: gateway.map(Into::into),
            mtu,
        }
    }

    #[test]
    fn static_network_config_parses_back() {
        let nics = [
            // All digits: a YAML 1.1 reader would take it for a number if it were unquoted.
            nic("52:54:00:12:34:56", [10, 0, 0, 5], 24, None, 1450),
            nic(
                "52:54:00:AB:CD:EF",
                [10, 1, 0, 7],
                16,
                Some([10, 1, 0, 1]),
                1500,
            ),
            nic(
                "52:54:00:00:00:09",
                [10, 2, 0, 9],
                24,
                Some([10, 2, 0, 1]),
                9000,
            ),
        ];
        let nc = SeedFiles::for_vm("u", "h", None, &nics).network_config;
        let doc: serde_yaml::Value = serde_yaml::from_str(&nc).unwrap();
        assert_eq!(doc["version"], serde_yaml::Value::from(2));
        let eths = doc["ethernets"].as_mapping().unwrap();
        let names: Vec<&str> = eths.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(names, ["eth0", "eth1", "eth2"]);
        let eth0 = &doc["ethernets"]["eth0"];
        assert_eq!(
            eth0["match"]["macaddress"].as_str(),
            Some("52:54:00:12:34:56")
        );
        assert_eq!(eth0["set-name"].as_str(), Some("eth0"));
        assert_eq!(
            eth0["addresses"],
            serde_yaml::Value::Sequence(vec!["10.0.0.5/24".into()])
        );
        assert_eq!(eth0["mtu"].as_u64(), Some(1450));
        assert!(eth0.get("routes").is_none(), "no gateway, no route");
        let eth1 = &doc["ethernets"]["eth1"];
        assert_eq!(
            eth1["match"]["macaddress"].as_str(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(eth1["addresses"][0].as_str(), Some("10.1.0.7/16"));
        let routes = eth1["routes"].as_sequence().unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0]["to"].as_str(), Some("0.0.0.0/0"));
        assert_eq!(routes[0]["via"].as_str(), Some("10.1.0.1"));
        // Only the first NIC with a gateway carries the default route.
        let eth2 = &doc["ethernets"]["eth2"];
        assert!(eth2.get("routes").is_none());
        assert_eq!(eth2["mtu"].as_u64(), Some(9000));
        assert!(!nc.contains("dhcp4"));
    }

    #[test]
    fn static_network_config_layout_the_test_guest_reads() {
        let nc = render_static_network_config(&[nic(
            "52:54:00:12:34:56",
            [10, 0, 0, 5],
            24,
            Some([10, 0, 0, 1]),
            1450,
        )]);
        assert_eq!(
            nc,
            "version: 2\nethernets:\n  \"eth0\":\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    \
             set-name: \"eth0\"\n    addresses: [\"10.0.0.5/24\"]\n    mtu: 1450\n    routes:\n      \
             - to: \"0.0.0.0/0\"\n        via: \"10.0.0.1\"\n"
        );
    }

    #[test]
    fn network_config_is_dhcp_on_ethernet() {
        let nc = SeedFiles::for_vm("u", "h", None, &[]).network_config;
        assert_eq!(nc, render_dhcp_network_config());
        assert!(nc.starts_with("version: 2\nethernets:\n"));
        assert!(nc.contains("    match:\n      name: \"e*\"\n"));
        assert!(nc.contains("    dhcp4: true\n"));
    }

    #[test]
    fn user_data_is_verbatim_or_default() {
        let ud = "#!/bin/sh\necho 'hi' > /dev/ttyS0\n";
        assert_eq!(SeedFiles::for_vm("u", "h", Some(ud), &[]).user_data, ud);
        assert_eq!(
            SeedFiles::for_vm("u", "h", None, &[]).user_data,
            DEFAULT_USER_DATA
        );
    }

    fn isoinfo(args: &[&str], iso: &Path) -> String {
        yun_testkit::isoinfo(iso, args).unwrap()
    }

    #[test]
    fn seed_iso_holds_the_files_under_cidata() {
        let dir = tempfile::tempdir().unwrap();
        let files = SeedFiles::for_vm(
            "uid-1",
            "web-0",
            Some("#cloud-config\nruncmd: [[\"true\"]]\n"),
            &[],
        );
        let iso = write_seed_iso(dir.path(), &files).unwrap();
        assert_eq!(iso, dir.path().join(SEED_ISO));
        assert_eq!(fs::metadata(&iso).unwrap().mode() & 0o777, 0o600);

        let pvd = isoinfo(&["-d"], &iso);
        assert!(pvd.contains("Volume id: cidata"), "{pvd}");
        let listing = isoinfo(&["-R", "-f"], &iso);
        let mut names: Vec<&str> = listing.lines().collect();
        names.sort();
        assert_eq!(names, ["/meta-data", "/network-config", "/user-data"]);
        for (name, want) in [
            ("/user-data", &files.user_data),
            ("/meta-data", &files.meta_data),
            ("/network-config", &files.network_config),
        ] {
            assert_eq!(&isoinfo(&["-R", "-x", name], &iso), want, "{name}");
        }
        // Only the ISO remains: no staging directory or temporary ISO.
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [SEED_ISO]);
    }

    #[test]
    fn identity_files_go_into_the_iso() {
        let dir = tempfile::tempdir().unwrap();
        let cred = yun_fleet::GuestCredential {
            auth_url: "http://k:5000/v3".into(),
            application_credential_id: "id-1".into(),
            application_credential_secret: "se'cr\"et: #1".into(),
            project_id: "p".into(),
            region: None,
        };
        let mut files = SeedFiles::for_vm("u", "h", None, &[]);
        files.identity = Some(crate::guest_identity::render(&cred, 2).unwrap());
        let iso = write_seed_iso(dir.path(), &files).unwrap();
        assert_eq!(fs::metadata(&iso).unwrap().mode() & 0o777, 0o600);
        let listing = isoinfo(&["-R", "-f"], &iso);
        let mut names: Vec<&str> = listing.lines().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "/meta-data",
                "/network-config",
                "/user-data",
                "/vendor-data",
                "/yun-clouds.yaml"
            ]
        );
        let identity = files.identity.as_ref().unwrap();
        assert_eq!(
            isoinfo(&["-R", "-x", "/vendor-data"], &iso),
            identity.vendor_data.as_str()
        );
        assert_eq!(
            isoinfo(&["-R", "-x", "/yun-clouds.yaml"], &iso),
            identity.clouds_yaml.as_str()
        );
        // Rock Ridge keeps the owner-only mode inside the guest too.
        let long = isoinfo(&["-R", "-l"], &iso);
        let vendor = long
            .lines()
            .find(|l| l.trim_end().ends_with(" vendor-data"))
            .unwrap();
        assert!(vendor.starts_with("-rw-------"), "{long}");
    }

    #[test]
    fn rewriting_replaces_the_iso() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_seed_iso(dir.path(), &SeedFiles::for_vm("u", "a", None, &[])).unwrap();
        let ino = fs::metadata(&first).unwrap().ino();
        let second = write_seed_iso(dir.path(), &SeedFiles::for_vm("u", "b", None, &[])).unwrap();
        assert_ne!(
            fs::metadata(&second).unwrap().ino(),
            ino,
            "replaced by rename"
        );
        let md = isoinfo(&["-R", "-x", "/meta-data"], &second);
        assert!(md.contains("local-hostname: \"b\""), "{md}");
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nope");
        let err = write_seed_iso(&gone, &SeedFiles::for_vm("u", "h", None, &[])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
