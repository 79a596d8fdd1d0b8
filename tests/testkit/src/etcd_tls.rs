//! Certificates and auth of a secure test etcd, made with the operators' own tool
//! (`scripts/fleet-certs.sh`) so the tests exercise what production uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use yun_fleet_etcd::BusTls;

use crate::{TestkitError, workspace_root};

const ETCDCTL_BINARY: &str = "/usr/bin/etcdctl";
/// CN of etcd's serving certificate (its file is `etcd.crt`).
const SERVER_NAME: &str = "etcd";

/// The PKI directory of one secure etcd: CA, serving certificate, client certificates. Tests
/// may also make a second, unrelated one (a foreign CA etcd must refuse).
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// A fresh CA and etcd's serving certificate for 127.0.0.1 / localhost.
    pub fn create(dir: PathBuf) -> Result<Self, TestkitError> {
        let pki = TestPki { dir };
        pki.certs(&["ca"])?;
        pki.certs(&[
            "server",
            SERVER_NAME,
            "--ip",
            "127.0.0.1",
            "--dns",
            "localhost",
        ])?;
        Ok(pki)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca-bundle.crt")
    }

    pub(crate) fn server_cert(&self) -> PathBuf {
        self.dir.join(format!("{SERVER_NAME}.crt"))
    }

    pub(crate) fn server_key(&self) -> PathBuf {
        self.dir.join(format!("{SERVER_NAME}.key"))
    }

    /// A client certificate for `cn` (issued once, then reused).
    pub fn client(&self, cn: &str) -> Result<BusTls, TestkitError> {
        let base = cn.replace(':', "-");
        let tls = BusTls {
            ca: self.ca(),
            cert: self.dir.join(format!("{base}.crt")),
            key: self.dir.join(format!("{base}.key")),
        };
        if !(tls.cert.is_file() && tls.key.is_file()) {
            self.certs(&["client", cn])?;
        }
        Ok(tls)
    }

    fn certs(&self, args: &[&str]) -> Result<(), TestkitError> {
        let script = workspace_root().join("scripts/fleet-certs.sh");
        let (cmd, rest) = args.split_first().unwrap_or((&"", &[]));
        let mut command = Command::new("bash");
        command.arg(&script).arg(cmd).arg(&self.dir).args(rest);
        run(&mut command, &format!("fleet-certs.sh {}", args.join(" ")))
    }
}

/// `etcdctl` flags that reach `endpoint` as the holder of `tls`.
pub fn etcdctl_flags(endpoint: &str, tls: &BusTls) -> Vec<String> {
    vec![
        format!("--endpoints={endpoint}"),
        format!("--cacert={}", tls.ca.display()),
        format!("--cert={}", tls.cert.display()),
        format!("--key={}", tls.key.display()),
    ]
}

/// Creates etcd's root user (authenticated by its certificate) and turns authentication on.
pub(crate) fn enable_auth(endpoint: &str, root: &BusTls) -> Result<(), TestkitError> {
    let flags = etcdctl_flags(endpoint, root);
    for args in [
        &["user", "add", "root", "--no-password"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let mut command = Command::new(ETCDCTL_BINARY);
        command.env("ETCDCTL_API", "3").args(&flags).args(args);
        run(&mut command, &format!("etcdctl {}", args.join(" ")))?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<(), TestkitError> {
    let out = command
        .output()
        .map_err(|e| TestkitError::io(format!("running {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestkitError::CommandFailed {
        command: what.to_owned(),
        detail: format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
