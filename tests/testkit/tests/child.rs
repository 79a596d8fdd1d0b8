//! ChildGuard ends the processes it owns, in the ways tests need.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use yun_testkit::{ChildGuard, wait_until};

fn is_alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still show one with state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn sleeper() -> ChildGuard {
    ChildGuard::spawn(Command::new("sleep").arg("600")).expect("sleep spawns")
}

#[test]
fn kill_hard_ends_with_sigkill() {
    let mut child = sleeper();
    let pid = child.pid();
    assert!(is_alive(pid));
    let status = child.kill_hard().expect("kill works");
    assert_eq!(status.signal(), Some(9));
    assert!(!is_alive(pid));
}

#[test]
fn terminate_ends_with_sigterm() {
    let mut child = sleeper();
    let status = child.terminate().expect("terminate works");
    assert_eq!(status.signal(), Some(15));
    assert_eq!(child.try_wait().expect("poll works"), Some(status));
}

#[test]
fn terminate_after_exit_reports_the_exit() {
    let mut child = ChildGuard::spawn(&mut Command::new("true")).expect("true spawns");
    wait_until("`true` to exit", Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
    .expect("true exits");
    let status = child
        .terminate()
        .expect("terminate of an exited child works");
    assert!(status.success());
}

#[test]
fn drop_kills_the_child() {
    let child = sleeper();
    let pid = child.pid();
    drop(child);
    assert!(!is_alive(pid), "pid {pid} survived its guard");
}
