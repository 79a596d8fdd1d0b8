//! Reading ISO 9660 images (cloud-init NoCloud seeds) the way a test checks what a guest gets:
//! with `isoinfo` from Debian's genisoimage.

use std::path::Path;
use std::process::Command;

use crate::TestkitError;

/// Runs `isoinfo <args> -i <iso>` and returns its standard output, e.g. `&["-R", "-f"]` for
/// the Rock Ridge listing.
pub fn isoinfo(iso: &Path, args: &[&str]) -> Result<String, TestkitError> {
    let command = || format!("isoinfo {} -i {}", args.join(" "), iso.display());
    let out = Command::new("isoinfo")
        .args(args)
        .arg("-i")
        .arg(iso)
        .output()
        .map_err(|e| TestkitError::io(format!("running {}", command()), e))?;
    if !out.status.success() {
        return Err(TestkitError::CommandFailed {
            command: command(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    String::from_utf8(out.stdout).map_err(|e| TestkitError::CommandFailed {
        command: command(),
        detail: format!("output is not UTF-8: {e}"),
    })
}

/// The contents of file `path` (Rock Ridge name, e.g. `/vendor-data`) in image `iso`.
pub fn iso_file(iso: &Path, path: &str) -> Result<String, TestkitError> {
    isoinfo(iso, &["-R", "-x", path])
}
