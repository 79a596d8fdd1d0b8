//! Finding the host block device of a Fibre Channel LUN from the names udev and multipathd give
//! it, without reading `/sys`: everything comes from symlinks in two directories, so the rule can
//! be exercised against a directory of fixture links.
//!
//! The rule [`resolve_fc`] implements, with `disk_dir` normally `/dev/disk` and `mapper_dir`
//! normally `/dev/mapper`:
//!
//! 1. **Paths.** Every entry of `disk_dir/by-path` named `…-fc-0x<WWPN>-lun-<N>` (udev's name for
//!    one FC path to a LUN) whose WWPN is one of the target WWNs and whose `N` is the LUN is a path
//!    to the LUN. Partition entries (`…-lun-<N>-part<K>`) are not. Each path is followed to the
//!    device it points at (`/dev/sdX`); links that resolve to nothing are skipped. Paths are taken
//!    in the order of their by-path names, and several paths to one device count once.
//! 2. **WWID.** A path device's WWID is `<H>` when `disk_dir/by-id/wwn-0x<H>` resolves to that
//!    same device.
//! 3. **Multipath preferred.** For the first path device that has a WWID, the multipath device
//!    is `mapper_dir/<name>` when either
//!    - `<name>` is `3<H>` or `<H>` (multipathd names maps by WWID, with the NAA designator type
//!      `3` in front, unless `user_friendly_names` is set), or
//!    - `disk_dir/by-id/dm-uuid-mpath-3<H>` (or `dm-uuid-mpath-<H>`) and `mapper_dir/<name>`
//!      resolve to the same device (how a friendly name like `mpatha` is recognised).
//!
//!    The `mapper_dir` path is returned as is (its name is stable; `dm-N` is not).
//! 4. **Otherwise** the device of the first path is returned, resolved (`/dev/sdX`).
//!
//! When multipathd has claimed the paths, some udev rule sets point `by-id/wwn-0x*` at the `dm-N`
//! device instead of a path device; then step 2 finds no WWID for the paths and step 4 would hand
//! out a single path, bypassing multipath. [`multipath_holder`] closes that gap from sysfs: the
//! caller asks it about a path device that `resolve_fc` returned.

use super::StorageError;
use std::path::{Path, PathBuf};

/// Resolves the block device for (any of `wwns`, `lun`); see the module documentation for the
/// exact rule. WWNs may be written with or without `0x`, with or without `:` between bytes, in
/// any case; each must be 16 hex digits.
pub fn resolve_fc(
    disk_dir: &Path,
    mapper_dir: &Path,
    wwns: &[String],
    lun: u32,
) -> Result<PathBuf, StorageError> {
    let wanted = normalize_wwns(wwns)?;
    let by_path = disk_dir.join("by-path");
    let mut devices: Vec<PathBuf> = Vec::new();
    for name in entry_names(&by_path)? {
        let Some((wwpn, path_lun)) = parse_fc_path_name(&name) else {
            continue;
        };
        if path_lun != u64::from(lun) || !wanted.contains(&wwpn) {
            continue;
        }
        // A dangling link is a path udev has not removed yet.
        if let Ok(dev) = by_path.join(&name).canonicalize()
            && !devices.contains(&dev)
        {
            devices.push(dev);
        }
    }
    let Some(first) = devices.first() else {
        return Err(StorageError::FcNotFound {
            wwns: wwns.to_vec(),
            lun,
            dir: by_path,
        });
    };
    let by_id = disk_dir.join("by-id");
    for dev in &devices {
        if let Some(wwid) = wwid_of(&by_id, dev)? {
            if let Some(mpath) = multipath_for(&by_id, mapper_dir, &wwid)? {
                return Ok(mpath);
            }
            // One LUN has one WWID: the other paths would give the same answer.
            break;
        }
    }
    Ok(first.clone())
}

/// The multipath map that holds the path device `device` (`/dev/sdX`), read from
/// `sys_block_dir` (normally `/sys/block`): a `<sys_block_dir>/<sdX>/holders/dm-N` entry whose
/// `<sys_block_dir>/dm-N/dm/uuid` starts with `mpath-` is the map. It is returned as
/// `mapper_dir/<dm/name>` when that entry exists (a stable name), else as `dm-N` next to `device`
/// (`/dev/dm-N`). `None` when no multipath map holds the device (other holders, such as LVM or
/// dm-crypt, are not multipath and are ignored).
pub fn multipath_holder(
    sys_block_dir: &Path,
    mapper_dir: &Path,
    device: &Path,
) -> Result<Option<PathBuf>, StorageError> {
    let Some(dev_name) = device.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    for holder in entry_names(&sys_block_dir.join(dev_name).join("holders"))? {
        if !holder.starts_with("dm-") {
            continue;
        }
        let dm = sys_block_dir.join(&holder).join("dm");
        let is_mpath = read_trimmed(&dm.join("uuid"))?.is_some_and(|u| u.starts_with("mpath-"));
        if !is_mpath {
            continue;
        }
        if let Some(name) = read_trimmed(&dm.join("name"))?
            && !name.is_empty()
            && !name.contains('/')
            && mapper_dir.join(&name).exists()
        {
            return Ok(Some(mapper_dir.join(name)));
        }
        if let Some(node) = device.parent().map(|dev_dir| dev_dir.join(&holder))
            && node.exists()
        {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

/// A small sysfs file's content without surrounding blanks; `None` if it does not exist.
fn read_trimmed(path: &Path) -> Result<Option<String>, StorageError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StorageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Lowercase 16-hex-digit forms of the WWNs, or the first malformed one as an error.
fn normalize_wwns(wwns: &[String]) -> Result<Vec<String>, StorageError> {
    if wwns.is_empty() {
        return Err(StorageError::invalid(
            "fc.wwns",
            "",
            "at least one target WWN is needed",
        ));
    }
    wwns.iter()
        .enumerate()
        .map(|(i, wwn)| {
            normalize_wwn(wwn).ok_or_else(|| {
                StorageError::invalid(
                    format!("fc.wwns[{i}]"),
                    wwn,
                    "must be 16 hex digits, optionally with 0x and ':' separators",
                )
            })
        })
        .collect()
}

fn normalize_wwn(wwn: &str) -> Option<String> {
    let s = wwn.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|&c| c != ':').collect();
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// `(wwpn, lun)` from a by-path name ending in `-fc-0x<16 hex>-lun-<decimal>`.
fn parse_fc_path_name(name: &str) -> Option<(String, u64)> {
    let (head, lun) = name.rsplit_once("-lun-")?;
    if lun.is_empty() || !lun.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, wwpn) = head.rsplit_once("-fc-")?;
    let wwpn = wwpn.strip_prefix("0x")?;
    let wwpn = normalize_wwn(wwpn)?;
    Some((wwpn, lun.parse().ok()?))
}

/// `H` of the `by-id/wwn-0x<H>` entry that resolves to `dev`.
fn wwid_of(by_id: &Path, dev: &Path) -> Result<Option<String>, StorageError> {
    for name in entry_names(by_id)? {
        let Some(wwid) = name.strip_prefix("wwn-0x") else {
            continue;
        };
        if wwid.is_empty() || name.contains("-part") {
            continue;
        }
        if by_id.join(&name).canonicalize().ok().as_deref() == Some(dev) {
            return Ok(Some(wwid.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// The `mapper_dir` entry of the multipath map for `wwid`, by name or through `dm-uuid-mpath-*`.
fn multipath_for(
    by_id: &Path,
    mapper_dir: &Path,
    wwid: &str,
) -> Result<Option<PathBuf>, StorageError> {
    let ids = [format!("3{wwid}"), wwid.to_owned()];
    let maps = entry_names(mapper_dir)?;
    if let Some(name) = maps
        .iter()
        .find(|m| ids.iter().any(|id| m.eq_ignore_ascii_case(id)))
    {
        return Ok(Some(mapper_dir.join(name)));
    }
    let dm_devices: Vec<PathBuf> = ids
        .iter()
        .filter_map(|id| {
            by_id
                .join(format!("dm-uuid-mpath-{id}"))
                .canonicalize()
                .ok()
        })
        .collect();
    if dm_devices.is_empty() {
        return Ok(None);
    }
    Ok(maps
        .iter()
        .find(|m| {
            mapper_dir
                .join(m)
                .canonicalize()
                .is_ok_and(|d| dm_devices.contains(&d))
        })
        .map(|m| mapper_dir.join(m)))
}

/// Sorted UTF-8 entry names of `dir`; a missing directory has none (no multipath installed, no
/// FC disks seen yet).
fn entry_names(dir: &Path) -> Result<Vec<String>, StorageError> {
    let io = |source| StorageError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry.map_err(io)?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
#[path = "fc_tests.rs"]
mod tests;
