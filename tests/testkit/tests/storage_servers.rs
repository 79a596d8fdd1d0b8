//! The throwaway storage servers serve QEMU's own initiators the way the Yun agent uses them:
//! qemu-img creates and inspects a qcow2 image and qemu-io writes and reads it back, over an
//! iSCSI LUN (with and without CHAP) and over an NFS export; and they leave nothing running.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use yun_testkit::{IscsiTarget, NfsServer};

const MIB: u64 = 1024 * 1024;
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
const IQN: &str = "iqn.2024-01.dev.yun.test:storage";
const CHAP_USER: &str = "yun-agent";
const CHAP_PASSWORD: &str = "chap-secret-0123";

/// True when the test cannot run because a program is missing (under CI it fails instead).
fn skipped(test: &str, programs: &[&str]) -> bool {
    !yun_testkit::have_tools(test, programs)
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

fn succeeds(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr.
fn fails(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        !output.status.success(),
        "{program} {args:?} should fail: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_qcow2_info(info: &str, size: &str) {
    assert!(info.contains("file format: qcow2"), "{info}");
    assert!(info.contains(&format!("virtual size: {size}")), "{info}");
}

/// Writes 4 KiB of 0x5a at offset 0 through qemu-io, reads them back with the pattern check,
/// and checks that a read expecting another pattern fails (so the check can fail at all).
/// `image` is what names the image to qemu-io: options and the file name or image options.
fn write_and_read_back(image: &[&str]) {
    fn with<'a>(command: &'a str, image: &[&'a str]) -> Vec<&'a str> {
        [&["-c", command], image].concat()
    }
    let written = succeeds("qemu-io", &with("write -P 0x5a 0 4k", image));
    assert!(
        written.contains("wrote 4096/4096 bytes at offset 0"),
        "{written}"
    );
    let read = succeeds("qemu-io", &with("read -P 0x5a 0 4k", image));
    assert!(read.contains("read 4096/4096 bytes at offset 0"), "{read}");
    assert!(!read.contains("Pattern verification failed"), "{read}");
    let output = run("qemu-io", &with("read -P 0xa5 0 4k", image));
    let text = describe(&output);
    assert!(
        !output.status.success() && text.contains("Pattern verification failed"),
        "reading 0xa5 where 0x5a was written must fail: {text}"
    );
}

fn starts_with_qcow2_magic(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.starts_with(QCOW2_MAGIC))
        .unwrap_or(false)
}

/// A reaped child has no /proc entry; a zombie still has one, with state Z.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn accepts_connections(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

#[test]
fn iscsi_lun_without_chap_holds_a_qcow2_image() {
    let test = "iscsi_lun_without_chap_holds_a_qcow2_image";
    if skipped(
        test,
        &[&IscsiTarget::PROGRAMS[..], &["qemu-img", "qemu-io"]].concat(),
    ) {
        return;
    }
    let mut server = IscsiTarget::start().expect("tgtd starts");
    let disk = server
        .add_lun(IQN, 1, "disk.img", 64 * MIB)
        .expect("LUN 1 is added");
    server
        .add_lun(IQN, 2, "second.img", 16 * MIB)
        .expect("LUN 2 is added");
    assert!(server.add_lun(IQN, 0, "controller.img", MIB).is_err());
    let url = server.lun_url(IQN, 1);
    assert_eq!(url, format!("iscsi://{}/{IQN}/1", server.portal()));

    let second = succeeds("qemu-img", &["info", &server.lun_url(IQN, 2)]);
    assert!(second.contains("virtual size: 16 MiB"), "{second}");

    succeeds("qemu-img", &["create", "-f", "qcow2", &url, "32M"]);
    assert_qcow2_info(&succeeds("qemu-img", &["info", &url]), "32 MiB");
    assert!(
        starts_with_qcow2_magic(&disk),
        "the qcow2 header went to the LUN's file {}",
        disk.display()
    );
    {
        write_and_read_back(&["-f", "qcow2", &url]);
    }

    let pid = server.pid().expect("tgtd runs");
    let portal = server.portal();
    let socket = format!("/var/run/tgtd/socket.{}", server.control_port());
    server.stop().expect("tgtd stops cleanly");
    assert!(!is_alive(pid), "tgtd {pid} is gone and reaped");
    assert!(!accepts_connections(&portal), "nothing serves {portal}");
    assert!(!Path::new(&socket).exists(), "{socket} is removed");
}

#[test]
fn iscsi_lun_with_chap_needs_the_right_password() {
    let test = "iscsi_lun_with_chap_needs_the_right_password";
    if skipped(
        test,
        &[&IscsiTarget::PROGRAMS[..], &["qemu-img", "qemu-io"]].concat(),
    ) {
        return;
    }
    let mut server = IscsiTarget::start().expect("tgtd starts");
    let disk = server
        .add_lun(IQN, 1, "chap.img", 64 * MIB)
        .expect("LUN 1 is added");
    server
        .require_chap(IQN, CHAP_USER, CHAP_PASSWORD)
        .expect("CHAP is required");
    let portal = server.portal();
    // What libvirt hands QEMU for <auth>: a user name and the password as a secret object.
    let file_opts = |prefix: &str| {
        format!(
            "{prefix}driver=iscsi,{prefix}transport=tcp,{prefix}portal={portal},\
             {prefix}target={IQN},{prefix}lun=1,{prefix}user={CHAP_USER},\
             {prefix}password-secret=sec0"
        )
    };
    let secret = |password: &str| format!("secret,id=sec0,data={password}");

    let anonymous = fails("qemu-img", &["info", &server.lun_url(IQN, 1)]);
    assert!(anonymous.contains("Authentication failure"), "{anonymous}");
    let wrong = fails(
        "qemu-img",
        &[
            "info",
            "--object",
            &secret("not-the-password"),
            "--image-opts",
            &file_opts(""),
        ],
    );
    assert!(wrong.contains("Authentication failure"), "{wrong}");

    let raw = succeeds(
        "qemu-img",
        &[
            "info",
            "--object",
            &secret(CHAP_PASSWORD),
            "--image-opts",
            &file_opts(""),
        ],
    );
    assert!(raw.contains("virtual size: 64 MiB"), "{raw}");

    // qemu-img create takes no --image-opts: credentials go in the URL.
    let url_with_credentials = format!("iscsi://{CHAP_USER}%{CHAP_PASSWORD}@{portal}/{IQN}/1");
    succeeds(
        "qemu-img",
        &["create", "-f", "qcow2", &url_with_credentials, "32M"],
    );
    assert!(starts_with_qcow2_magic(&disk), "{}", disk.display());
    let qcow2_opts = format!("driver=qcow2,{}", file_opts("file."));
    let right_secret = secret(CHAP_PASSWORD);
    let image = ["--object", &right_secret, "--image-opts", &qcow2_opts];
    let info = succeeds("qemu-img", &[&["info"], &image[..]].concat());
    assert_qcow2_info(&info, "32 MiB");
    {
        write_and_read_back(&image);
    }
}

#[test]
fn nfs_export_holds_a_qcow2_image() {
    let test = "nfs_export_holds_a_qcow2_image";
    if skipped(
        test,
        &[&NfsServer::PROGRAMS[..], &["qemu-img", "qemu-io"]].concat(),
    ) {
        return;
    }
    let mut server = NfsServer::start().expect("ganesha starts");
    let url = server.url("disk.qcow2");
    assert_eq!(
        url,
        format!(
            "nfs://127.0.0.1{}/disk.qcow2",
            server.export_path().display()
        )
    );

    succeeds("qemu-img", &["create", "-f", "qcow2", &url, "32M"]);
    assert_qcow2_info(&succeeds("qemu-img", &["info", &url]), "32 MiB");
    let on_disk = server.export_path().join("disk.qcow2");
    assert!(starts_with_qcow2_magic(&on_disk), "{}", on_disk.display());
    {
        write_and_read_back(&["-f", "qcow2", &url]);
        // The data is in the exported directory itself, not only somewhere behind NFS.
        let local = on_disk.to_string_lossy();
        succeeds(
            "qemu-io",
            &["-f", "qcow2", "-c", "read -P 0x5a 0 4k", &local],
        );
    }

    let ganesha = server.pid().expect("ganesha runs");
    let rpcbind = server.rpcbind_pid();
    server.stop().expect("ganesha stops cleanly");
    assert!(!is_alive(ganesha), "ganesha {ganesha} is gone and reaped");
    if let Some(rpcbind) = rpcbind {
        assert!(
            !is_alive(rpcbind),
            "our rpcbind {rpcbind} is gone and reaped"
        );
    }
    assert!(!accepts_connections("127.0.0.1:2049"), "nothing serves NFS");
}

#[test]
fn nfs_servers_take_turns() {
    let test = "nfs_servers_take_turns";
    if skipped(test, &NfsServer::PROGRAMS) {
        return;
    }
    let first = NfsServer::start().expect("first ganesha starts");
    let (started, started_at) = mpsc::channel();
    let second = std::thread::spawn(move || {
        let server = NfsServer::start().expect("second ganesha starts");
        started.send(Instant::now()).expect("test still listening");
        drop(server);
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        started_at.try_recv().is_err(),
        "a second NfsServer must wait while the first exists"
    );
    let first_dropped = Instant::now();
    drop(first);
    let second_started = started_at
        .recv_timeout(Duration::from_secs(60))
        .expect("second NfsServer starts once the first is dropped");
    assert!(second_started > first_dropped);
    second.join().expect("second server thread ends");
}
