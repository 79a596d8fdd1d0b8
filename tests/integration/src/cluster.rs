//! `Cluster`: one etcd, one bootstrap-mode controller and one agent (its own host name, state
//! dir and metrics ports), torn down with everything it created when dropped. etcd runs as in
//! production: TLS, client certificates, auth on; the controller and the agent each use their
//! own certificate and etcd role (docs/ops/fleet-bus-security.md).

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use yun_testkit::{
    ChildGuard, EtcdServer, binary, require_libvirt_system, wait_until, workspace_root,
};

use crate::host::{domains_mentioning, free_port, http_get, random_suffix, remove_domain};

/// Agent state dirs live here: libvirt's qemu user must be able to traverse every parent.
const STATE_ROOT: &str = "/var/lib/yun-it";
/// TCG boots on a busy 2-core machine are slow; this covers image copy + boot.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TAIL_LINES: usize = 30;

/// A VM the status says is Running.
#[derive(Debug, Clone)]
pub struct VmRunning {
    pub uid: String,
    pub host: String,
    pub domain_uuid: String,
}

impl VmRunning {
    pub fn domain_name(&self) -> String {
        format!("yun-{}", self.uid)
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub host: String,
    pub etcd: EtcdServer,
    pub manifests: TempDir,
    pub state_dir: PathBuf,
    pub agent_metrics: SocketAddr,
    pub controller_metrics: SocketAddr,
    work: TempDir,
    controller: Option<ChildGuard>,
    /// Extra `yun-controller run` flags (see [`Cluster::restart_controller_with`]).
    controller_args: Vec<String>,
    agent: Option<ChildGuard>,
    /// Held for the cluster's lifetime: agents sharing one libvirtd adopt (and then remove)
    /// each other's domains, so clusters that run guests must not overlap.
    _libvirt_lock: File,
}

fn open_log(path: &Path) -> (File, File) {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let clone = file.try_clone().expect("clone log handle");
    (file, clone)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Builds images/build/yun-test once (the script is idempotent; the lock keeps parallel tests
/// from building into the same directory at once).
fn template_image() -> PathBuf {
    let root = workspace_root();
    let dir = root.join("images/build/yun-test");
    let status = Command::new("flock")
        .arg("/tmp/yun-it-image-build.lock")
        .arg("bash")
        .arg(root.join("images/test-template/build.sh"))
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run images/test-template/build.sh");
    assert!(status.success(), "building the test template image failed");
    dir
}

fn sha_of(sums: &str, file: &str) -> String {
    sums.lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            let (sum, name) = (parts.next()?, parts.next()?);
            (name.trim_start_matches('*') == file).then(|| sum.to_owned())
        })
        .unwrap_or_else(|| panic!("{file} missing from SHA256SUMS"))
}

/// Exclusive lock shared by all clusters of this crate (blocks until the previous one is gone).
fn lock_libvirt() -> File {
    let root = Path::new(STATE_ROOT);
    std::fs::create_dir_all(root).expect("create state root");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(".libvirt-tests.lock"))
        .expect("open libvirt lock file");
    file.lock().expect("lock libvirt lock file");
    file
}

/// Copies a built binary into `dir`, so that other builds sharing target/ (which replace the
/// file) cannot pull it away mid-test.
fn copy_binary(name: &str, dir: &Path) {
    let mut path = None;
    wait_until(
        &format!("binary {name} present"),
        Duration::from_secs(120),
        || {
            path = binary(name).ok();
            path.as_ref()
                .is_some_and(|p| std::fs::copy(p, dir.join(name)).is_ok())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", binary(name)));
    std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755))
        .expect("chmod binary");
}

fn state_dir_for(host: &str) -> PathBuf {
    let root = Path::new(STATE_ROOT);
    std::fs::create_dir_all(root).expect("create state root");
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .expect("chmod state root");
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).expect("create state dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod state dir");
    dir
}

impl Cluster {
    /// etcd + controller + agent, with the yun-test VmImage already applied.
    pub fn start() -> Cluster {
        require_libvirt_system().expect("libvirt");
        let image = template_image();
        let host = format!("it-{}", random_suffix());
        let libvirt_lock = lock_libvirt();
        let etcd = EtcdServer::start_secure().expect("start etcd");
        crate::etcd_read::register_etcd_tls(
            &etcd.endpoint(),
            etcd.root_tls().expect("root certificate"),
        );
        let cluster = Cluster {
            state_dir: state_dir_for(&host),
            host,
            etcd,
            manifests: tempfile::Builder::new()
                .prefix("yun-it-manifests-")
                .tempdir()
                .expect("tempdir"),
            work: tempfile::Builder::new()
                .prefix("yun-it-work-")
                .tempdir()
                .expect("tempdir"),
            agent_metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            controller_metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            controller: None,
            controller_args: Vec::new(),
            agent: None,
            _libvirt_lock: libvirt_lock,
        };
        let mut cluster = cluster;
        for name in ["yun-controller", "yun-agent", "yunctl"] {
            copy_binary(name, cluster.work.path());
        }
        cluster.provision_bus_users();
        cluster.write_agent_config();
        cluster.apply_image(&image);
        cluster.start_controller();
        cluster.start_agent();
        cluster
    }

    /// `--etcd-endpoints` and the TLS flags of the holder of `cn`'s certificate.
    fn etcd_flags(&self, cn: &str) -> Vec<String> {
        let tls = self.etcd.tls_for(cn).expect("client certificate");
        vec![
            "--etcd-endpoints".into(),
            self.etcd.endpoint(),
            "--etcd-ca".into(),
            tls.ca.display().to_string(),
            "--etcd-cert".into(),
            tls.cert.display().to_string(),
            "--etcd-key".into(),
            tls.key.display().to_string(),
        ]
    }

    /// The controller's and this host's etcd users, made as an operator would (root's
    /// certificate, `yun-controller bus-auth`).
    fn provision_bus_users(&self) {
        let root = self.etcd_flags("root");
        for args in [
            vec!["enable"],
            vec!["add-host", self.host.as_str()],
            vec!["add-client"],
        ] {
            let out = Command::new(self.bin("yun-controller"))
                .arg("bus-auth")
                .args(&root)
                .args(&args)
                .env("RUST_BACKTRACE", "0")
                .stdin(Stdio::null())
                .output()
                .expect("run yun-controller bus-auth");
            assert!(out.status.success(), "bus-auth {args:?} failed: {out:?}");
        }
    }

    fn write_agent_config(&self) {
        let tls = self
            .etcd
            .tls_for(&format!("host:{}", self.host))
            .expect("host certificate");
        let toml = format!(
            "host_name = \"{}\"\netcd_endpoints = [\"{}\"]\nstate_dir = \"{}\"\n\
             libvirt_uri = \"qemu:///system\"\nvirt_type = \"qemu\"\nmetrics_listen = \"{}\"\n\
             etcd_ca = \"{}\"\netcd_cert = \"{}\"\netcd_key = \"{}\"\n",
            self.host,
            self.etcd.endpoint(),
            self.state_dir.display(),
            self.agent_metrics,
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display(),
        );
        std::fs::write(self.work.path().join("agent.toml"), toml).expect("write agent.toml");
    }

    fn apply_image(&self, image: &Path) {
        let sums = std::fs::read_to_string(image.join("SHA256SUMS")).expect("SHA256SUMS");
        let template = std::fs::read_to_string(workspace_root().join("examples/vmimage.yaml.in"))
            .expect("vmimage.yaml.in");
        let mut text = template;
        for (placeholder, file) in [
            ("DISK", "disk.qcow2"),
            ("KERNEL", "vmlinuz"),
            ("INITRD", "initrd.img"),
        ] {
            text = text
                .replace(
                    &format!("@{placeholder}_SOURCE@"),
                    &format!("file://{}", image.join(file).display()),
                )
                .replace(&format!("@{placeholder}_SHA256@"), &sha_of(&sums, file));
        }
        let path = self.work.path().join("vmimage.yaml");
        std::fs::write(&path, text).expect("write vmimage.yaml");
        let out = self.apply(&path);
        assert!(
            out.status.success(),
            "applying vmimage.yaml failed: {out:?}"
        );
    }

    /// This cluster's private copy of a workspace binary.
    fn bin(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub fn controller_log(&self) -> PathBuf {
        self.work.path().join("controller.log")
    }

    pub fn agent_log(&self) -> PathBuf {
        self.work.path().join("agent.log")
    }

    /// The controller's audit trail.
    pub fn audit_log(&self) -> PathBuf {
        self.work.path().join("controller-audit.log")
    }

    /// `yun-controller audit <args…> --audit-log <the controller's log>`.
    pub fn audit(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin("yun-controller"))
            .arg("audit")
            .args(args)
            .arg("--audit-log")
            .arg(self.audit_log())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run yun-controller audit")
    }

    /// Where the test keeps its own files (manifest sources, configs, logs).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn start_controller(&mut self) {
        let (out, err) = open_log(&self.controller_log());
        let mut cmd = Command::new(self.bin("yun-controller"));
        cmd.arg("run")
            .args(self.etcd_flags("yun-controller"))
            .arg("--manifests")
            .arg(self.manifests.path())
            .args(["--metrics-listen", &self.controller_metrics.to_string()])
            .arg("--audit-log")
            .arg(self.audit_log())
            .args(&self.controller_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.controller = Some(ChildGuard::spawn(&mut cmd).expect("spawn controller"));
    }

    /// Stops the controller (SIGKILL, waited for) and starts it again with `args` added.
    pub fn restart_controller_with(&mut self, args: &[String]) {
        self.controller = None;
        self.controller_args = args.to_vec();
        self.start_controller();
    }

    pub fn start_agent(&mut self) {
        let (out, err) = open_log(&self.agent_log());
        let mut cmd = Command::new(self.bin("yun-agent"));
        cmd.arg("--config")
            .arg(self.work.path().join("agent.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.agent = Some(ChildGuard::spawn(&mut cmd).expect("spawn agent"));
    }

    /// SIGKILL, as if the agent crashed.
    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill_hard().expect("kill agent");
        }
    }

    pub fn agent_alive(&mut self) -> bool {
        self.agent
            .as_mut()
            .is_some_and(|a| matches!(a.try_wait(), Ok(None)))
    }

    pub fn controller_alive(&mut self) -> bool {
        self.controller
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `yun-controller apply -f file --manifests <dir>`.
    pub fn apply(&self, file: &Path) -> std::process::Output {
        Command::new(self.bin("yun-controller"))
            .arg("apply")
            .arg("-f")
            .arg(file)
            .arg("--manifests")
            .arg(self.manifests.path())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run yun-controller apply")
    }

    /// `yunctl ARGS` as the `yunctl` etcd user (whose role reaches only the object store).
    pub fn yunctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin("yunctl"))
            .args(self.etcd_flags("yunctl"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run yunctl")
    }

    /// Creates a VirtualMachine with a `yun-marker` line in the object store with
    /// `yunctl apply` (not through the manifests directory).
    pub fn yunctl_apply_vm(&self, name: &str, marker: &str) {
        let source = self.work.path().join(format!("yunctl-vm-{name}.yaml"));
        std::fs::write(&source, vm_manifest(name, marker)).expect("write vm manifest");
        let out = self.yunctl(&["apply", "-f", &source.display().to_string()]);
        assert!(out.status.success(), "yunctl apply {name} failed: {out:?}");
    }

    /// Writes a VirtualMachine manifest with a `yun-marker` line and applies it.
    pub fn apply_vm(&self, name: &str, marker: &str) -> PathBuf {
        let text = vm_manifest(name, marker);
        let file_name = format!("vm-{name}.yaml");
        let source = self.work.path().join(&file_name);
        std::fs::write(&source, text).expect("write vm manifest");
        let out = self.apply(&source);
        assert!(out.status.success(), "apply {name} failed: {out:?}");
        self.manifests.path().join(file_name)
    }

    /// Writes `text` as `file_name` in the work dir and applies it (replacing an earlier file
    /// of that name); returns its path in the manifests directory.
    pub fn apply_manifest(&self, file_name: &str, text: &str) -> PathBuf {
        let source = self.work.path().join(file_name);
        std::fs::write(&source, text).expect("write manifest");
        let out = self.apply(&source);
        assert!(out.status.success(), "apply {file_name} failed: {out:?}");
        self.manifests.path().join(file_name)
    }

    /// Volume `name` (default namespace) as the object store holds it: `metadata.uid`, and
    /// its `status` (a `VolumeStatus`: phase, vm, host, message, conditions); `None` if absent.
    pub fn volume_record(&self, name: &str) -> Option<Value> {
        crate::etcd_read::etcd_get_json(&self.etcd.endpoint(), &store_key("volumes", name))
    }

    /// `yun-controller status -o json`; `None` if it failed (e.g. etcd is down).
    pub fn status_json(&self) -> Option<Vec<Value>> {
        let out = Command::new(self.bin("yun-controller"))
            .args(["status", "-o", "json"])
            .args(self.etcd_flags("yun-controller"))
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The status entry of VM `name` (default namespace), if any.
    pub fn vm_status(&self, name: &str) -> Option<Value> {
        self.status_json()?
            .into_iter()
            .find(|v| v["name"] == name && v["namespace"] == "default")
    }

    /// Waits until VM `name` is Running on this cluster's host.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> VmRunning {
        let mut running = None;
        let waited = wait_until(&format!("{name} Running"), timeout, || {
            running = self.vm_status(name).and_then(|v| running_of(&v));
            running.is_some()
        });
        if let Err(e) = waited {
            panic!(
                "{e}; last status: {:?}\n{}",
                self.vm_status(name),
                self.diagnostics()
            );
        }
        running.expect("checked above")
    }

    pub fn vm_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("vms").join(uid)
    }

    /// The guest's serial console so far, without carriage returns.
    pub fn console(&self, uid: &str) -> String {
        let bytes = std::fs::read(self.vm_dir(uid).join("console.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// Complete console lines (ending in a newline) carrying the guest's READY marker.
    pub fn ready_lines(&self, uid: &str) -> Vec<String> {
        let console = self.console(uid);
        let complete = console
            .rsplit_once('\n')
            .map_or("", |(done, _partial)| done);
        complete
            .lines()
            .filter(|l| l.contains("YUN-GUEST-READY"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    pub fn wait_ready_line(&self, uid: &str, timeout: Duration) -> String {
        if let Err(e) = wait_until("guest READY line", timeout, || {
            !self.ready_lines(uid).is_empty()
        }) {
            panic!(
                "{e}\n--- console ---\n{}\n{}",
                self.console(uid),
                self.diagnostics()
            );
        }
        self.ready_lines(uid).remove(0)
    }

    /// Agent /healthz status code, `None` if it does not answer.
    pub fn agent_health(&self) -> Option<u16> {
        http_get(self.agent_metrics, "/healthz").map(|(code, _)| code)
    }

    /// Controller /healthz status code, `None` if it does not answer.
    pub fn controller_health(&self) -> Option<u16> {
        http_get(self.controller_metrics, "/healthz").map(|(code, _)| code)
    }

    /// Log tails of everything this cluster runs, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- controller log ---\n{}\n--- agent log ---\n{}\n--- etcd log ---\n{}",
            tail(&self.controller_log()),
            tail(&self.agent_log()),
            self.etcd.log_tail()
        )
    }
}

fn running_of(v: &Value) -> Option<VmRunning> {
    let status = &v["status"];
    if status["phase"] != "Running" {
        return None;
    }
    Some(VmRunning {
        uid: v["uid"].as_str()?.to_owned(),
        host: status["host"].as_str()?.to_owned(),
        domain_uuid: status["domainUUID"].as_str()?.to_owned(),
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agent first, so it cannot recreate what is removed below.
        self.agent = None;
        if let Some(mut controller) = self.controller.take() {
            let _ = controller.terminate();
        }
        let needle = format!("{}/", self.state_dir.display());
        for domain in domains_mentioning(&needle) {
            remove_domain(&domain);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The object-store key of object `name` (default namespace) of the kind with plural `plural`.
pub fn store_key(plural: &str, name: &str) -> String {
    format!("/yun/store/v1/objects/{plural}/default/{name}")
}

/// A small VirtualMachine of the test template whose user data carries `marker`.
fn vm_manifest(name: &str, marker: &str) -> String {
    format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  diskGiB: 1\n  userData: |\n    #cloud-config\n    yun-marker: {marker}\n"
    )
}
