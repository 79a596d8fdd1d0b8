//! What this machine offers, read from the machine itself.

use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FactsError {
    #[error("cannot read {what}: {message}")]
    Read { what: &'static str, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// CPUs online, MemTotal from /proc/meminfo, and the size of the filesystem holding `state_dir`.
pub fn read_capacity(state_dir: &Path) -> Result<Capacity, FactsError> {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .map_err(|e| FactsError::Read {
            what: "cpu count",
            message: e.to_string(),
        })?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| FactsError::Read {
        what: "/proc/meminfo",
        message: e.to_string(),
    })?;
    let memory_mib = parse_mem_total_kib(&meminfo).ok_or(FactsError::Read {
        what: "/proc/meminfo",
        message: "no MemTotal line".into(),
    })? / 1024;
    let stat = nix::sys::statvfs::statvfs(state_dir).map_err(|e| FactsError::Read {
        what: "state_dir filesystem size",
        message: e.to_string(),
    })?;
    let disk_bytes = stat.blocks().saturating_mul(stat.fragment_size());
    Ok(Capacity {
        cpus,
        memory_mib,
        disk_gib: disk_bytes / (1024 * 1024 * 1024),
    })
}

fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mem_total() {
        assert_eq!(
            parse_mem_total_kib("MemFree: 1 kB\nMemTotal:  24576000 kB\n"),
            Some(24_576_000)
        );
        assert_eq!(parse_mem_total_kib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_machine() {
        let c = read_capacity(Path::new("/")).unwrap();
        assert!(c.cpus >= 1 && c.memory_mib > 0 && c.disk_gib > 0, "{c:?}");
    }
}
