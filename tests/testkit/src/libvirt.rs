//! Checking that the libvirt system daemon is there before a test needs it.

use std::process::{Command, Stdio};

use crate::TestkitError;

const SYSTEM_URI: &str = "qemu:///system";

/// Succeeds when `virsh -c qemu:///system version` answers. Tests that need real guests call
/// this first so that a missing daemon fails the test with a clear instruction instead of
/// skipping it silently.
pub fn require_libvirt_system() -> Result<(), TestkitError> {
    require_libvirt(SYSTEM_URI)
}

fn require_libvirt(uri: &str) -> Result<(), TestkitError> {
    let output = Command::new("virsh")
        .args(["-c", uri, "version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::LibvirtUnavailable {
            detail: format!("cannot run virsh: {e}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(TestkitError::LibvirtUnavailable {
        detail: format!("`virsh -c {uri} version` failed: {}", stderr.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_uri_error_tells_how_to_start_libvirt() {
        let err = require_libvirt("test+unix:///system?socket=/nonexistent/yun-testkit.sock")
            .expect_err("a socket that does not exist cannot answer");
        let message = err.to_string();
        assert!(message.contains("scripts/libvirt.sh up"), "{message}");
        assert!(message.contains("failed"), "{message}");
    }
}
