//! The fleet-bus key schema.
//!
//! ```text
//! /yun/v1/hosts/<host>/info                 HostInfo, attached to the host's lease (gone = host silent)
//! /yun/v1/hosts/<host>/alloc                HostAllocation; its mod_revision guards placement
//! /yun/v1/hosts/<host>/images               HostImages: templates in the host's cache (agent writes)
//! /yun/v1/hosts/<host>/vms/<uid>            VmDesired (controller writes, agent reads)
//! /yun/v1/hosts/<host>/report/vms/<uid>    VmObserved (agent writes, controller reads)
//! /yun/v1/hosts/<host>/report/vms/<uid>/volumes/<volume uid>
//!                                           AttachmentRecord (agent writes before attaching)
//! /yun/v1/hosts/<host>/net                  HostNetworks: bridges, VLAN/VXLAN segments, peers
//! /yun/v1/hosts/<host>/fw/groups            HostGroups: rules of the groups the host's ports use
//! /yun/v1/hosts/<host>/fw/members/<ns>/<group>/<shard>
//!                                           MemberShard: members of a group a rule names
//! /yun/v1/placements/<uid>                  Placement: create-only, so a VM is never placed twice
//! /yun/v1/volumes/<volume uid>/claim        VolumeClaim: who may attach it (controller only)
//! /yun/v1/election/controller               leader election (value: the leader's identity)
//! /yun/store/v1/…                           the bootstrap object store (yun-store's key table)
//! ```
//!
//! An agent watches exactly `host_prefix(its host)`; an etcd role can grant it that prefix alone.
//! Everything an agent writes is `info`, `images` or under `report/` (`host_report_prefix`), so
//! its role can be read-only on the rest of its prefix: a host cannot rewrite its own desired
//! VMs, allocation or firewall groups (see `yun_fleet_etcd::roles`).

use crate::names::{NameError, check_host_name, check_vm_uid};
use thiserror::Error;

pub const ROOT: &str = "/yun/v1/";
pub const HOSTS_PREFIX: &str = "/yun/v1/hosts/";
pub const PLACEMENTS_PREFIX: &str = "/yun/v1/placements/";
pub const VOLUMES_PREFIX: &str = "/yun/v1/volumes/";
pub const ELECTION_CONTROLLER: &str = "/yun/v1/election/controller";
/// The object store of bootstrap mode (`yun-store` owns what is under it): beside the fleet's
/// `/yun/v1/`, not in it, so no host's role can reach it and `yunctl`'s role reaches only it.
pub const STORE_PREFIX: &str = "/yun/store/v1/";

/// A key could not be built from the given parts.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("security group id {id:?} must be <namespace>/<name>, both non-empty")]
    BadGroupId { id: String },
}

/// Everything one host reads: `/yun/v1/hosts/<host>/` (trailing slash: `a` never matches `ab`).
pub fn host_prefix(host: &str) -> Result<String, KeyError> {
    check_host_name(host)?;
    Ok(format!("{HOSTS_PREFIX}{host}/"))
}

pub fn host_info(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}info", host_prefix(host)?))
}

pub fn host_alloc(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}alloc", host_prefix(host)?))
}

pub fn host_images(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}images", host_prefix(host)?))
}

/// The prefix under which a host's VM records (desired and observed) live.
pub fn host_vms_prefix(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}vms/", host_prefix(host)?))
}

pub fn vm_desired(host: &str, uid: &str) -> Result<String, KeyError> {
    check_vm_uid(uid)?;
    Ok(format!("{}{uid}", host_vms_prefix(host)?))
}

/// Everything the agent of `host` reports about its VMs (observed state, attachment records):
/// the one prefix, besides `info` and `images`, its etcd role may write.
pub fn host_report_prefix(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}report/", host_prefix(host)?))
}

pub fn vm_observed(host: &str, uid: &str) -> Result<String, KeyError> {
    check_vm_uid(uid)?;
    Ok(format!("{}vms/{uid}", host_report_prefix(host)?))
}

/// Every attachment record of one VM on one host.
pub fn vm_volumes_prefix(host: &str, uid: &str) -> Result<String, KeyError> {
    Ok(format!("{}/volumes/", vm_observed(host, uid)?))
}

pub fn vm_volume(host: &str, uid: &str, volume_uid: &str) -> Result<String, KeyError> {
    check_vm_uid(volume_uid)?;
    Ok(format!("{}{volume_uid}", vm_volumes_prefix(host, uid)?))
}

/// The claim of one volume (by its uid).
pub fn volume_claim(volume_uid: &str) -> Result<String, KeyError> {
    check_vm_uid(volume_uid)?;
    Ok(format!("{VOLUMES_PREFIX}{volume_uid}/claim"))
}

pub fn host_networks(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}net", host_prefix(host)?))
}

pub fn host_fw_groups(host: &str) -> Result<String, KeyError> {
    Ok(format!("{}fw/groups", host_prefix(host)?))
}

/// `(namespace, name)` of a group id `namespace/name`.
pub fn split_group_id(id: &str) -> Result<(&str, &str), KeyError> {
    match id.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns, name))
        }
        _ => Err(KeyError::BadGroupId { id: id.to_owned() }),
    }
}

/// Every member shard of one group on one host.
pub fn host_fw_members_prefix(host: &str, group: &str) -> Result<String, KeyError> {
    let (ns, name) = split_group_id(group)?;
    Ok(format!("{}fw/members/{ns}/{name}/", host_prefix(host)?))
}

pub fn host_fw_member_shard(host: &str, group: &str, shard: u32) -> Result<String, KeyError> {
    Ok(format!("{}{shard}", host_fw_members_prefix(host, group)?))
}

pub fn placement(uid: &str) -> Result<String, KeyError> {
    check_vm_uid(uid)?;
    Ok(format!("{PLACEMENTS_PREFIX}{uid}"))
}

/// What a key under `/yun/v1/hosts/` denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    Info {
        host: String,
    },
    Alloc {
        host: String,
    },
    Images {
        host: String,
    },
    VmDesired {
        host: String,
        uid: String,
    },
    VmObserved {
        host: String,
        uid: String,
    },
    /// An attachment record: `uid` is the VM's, `volume` the volume's.
    VmVolume {
        host: String,
        uid: String,
        volume: String,
    },
    Networks {
        host: String,
    },
    FwGroups {
        host: String,
    },
    /// `group` is the group id, `namespace/name`.
    FwMembers {
        host: String,
        group: String,
        shard: u32,
    },
}

impl HostKey {
    /// Parses a key under `/yun/v1/hosts/`; `None` for anything this contract version does not
    /// define (newer agents may add keys, older readers skip them rather than fail).
    pub fn parse(key: &str) -> Option<HostKey> {
        let rest = key.strip_prefix(HOSTS_PREFIX)?;
        let mut parts = rest.split('/');
        let host = parts
            .next()
            .filter(|h| check_host_name(h).is_ok())?
            .to_owned();
        let segs: Vec<&str> = parts.collect();
        if let ["fw", "members", ns, name, shard] = segs.as_slice() {
            let shard = shard
                .parse()
                .ok()
                .filter(|s| *s < crate::network::MEMBER_SHARDS)?;
            let group = format!("{ns}/{name}");
            split_group_id(&group).ok()?;
            return Some(HostKey::FwMembers { host, group, shard });
        }
        if let ["report", "vms", uid, "volumes", volume] = segs.as_slice() {
            if check_vm_uid(uid).is_ok() && check_vm_uid(volume).is_ok() {
                return Some(HostKey::VmVolume {
                    host,
                    uid: (*uid).to_owned(),
                    volume: (*volume).to_owned(),
                });
            }
            return None;
        }
        let mut parts = segs.into_iter();
        let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("info"), None, None, None) => HostKey::Info { host },
            (Some("alloc"), None, None, None) => HostKey::Alloc { host },
            (Some("images"), None, None, None) => HostKey::Images { host },
            (Some("net"), None, None, None) => HostKey::Networks { host },
            (Some("fw"), Some("groups"), None, None) => HostKey::FwGroups { host },
            (Some("vms"), Some(uid), None, None) if check_vm_uid(uid).is_ok() => {
                HostKey::VmDesired {
                    host,
                    uid: uid.to_owned(),
                }
            }
            (Some("report"), Some("vms"), Some(uid), None) if check_vm_uid(uid).is_ok() => {
                HostKey::VmObserved {
                    host,
                    uid: uid.to_owned(),
                }
            }
            _ => return None,
        };
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_parse() {
        let uid = "6f1c2a3b-0000-4000-8000-000000000001";
        assert_eq!(
            HostKey::parse(&host_info("n1").unwrap()),
            Some(HostKey::Info { host: "n1".into() })
        );
        assert_eq!(
            HostKey::parse(&host_images("n1").unwrap()),
            Some(HostKey::Images { host: "n1".into() })
        );
        assert_eq!(
            HostKey::parse(&host_alloc("n1").unwrap()),
            Some(HostKey::Alloc { host: "n1".into() })
        );
        assert_eq!(
            HostKey::parse(&vm_desired("n1", uid).unwrap()),
            Some(HostKey::VmDesired {
                host: "n1".into(),
                uid: uid.into()
            })
        );
        assert_eq!(
            HostKey::parse(&vm_observed("n1", uid).unwrap()),
            Some(HostKey::VmObserved {
                host: "n1".into(),
                uid: uid.into()
            })
        );
    }

    #[test]
    fn volume_keys_round_trip_through_parse() {
        let (vm, vol) = ("vm-1", "vol-1");
        let k = vm_volume("n1", vm, vol).unwrap();
        assert_eq!(k, "/yun/v1/hosts/n1/report/vms/vm-1/volumes/vol-1");
        assert!(k.starts_with(&vm_volumes_prefix("n1", vm).unwrap()));
        assert_eq!(
            HostKey::parse(&k),
            Some(HostKey::VmVolume {
                host: "n1".into(),
                uid: vm.into(),
                volume: vol.into()
            })
        );
        assert_eq!(
            HostKey::parse("/yun/v1/hosts/n1/report/vms/vm-1/volumes/"),
            None
        );
        assert_eq!(volume_claim(vol).unwrap(), "/yun/v1/volumes/vol-1/claim");
        assert!(volume_claim("a/b").is_err());
    }

    #[test]
    fn network_keys_round_trip_through_parse() {
        assert_eq!(
            HostKey::parse(&host_networks("n1").unwrap()),
            Some(HostKey::Networks { host: "n1".into() })
        );
        assert_eq!(
            HostKey::parse(&host_fw_groups("n1").unwrap()),
            Some(HostKey::FwGroups { host: "n1".into() })
        );
        let k = host_fw_member_shard("n1", "team-a/web", 17).unwrap();
        assert_eq!(k, "/yun/v1/hosts/n1/fw/members/team-a/web/17");
        assert!(k.starts_with(&host_fw_members_prefix("n1", "team-a/web").unwrap()));
        assert_eq!(
            HostKey::parse(&k),
            Some(HostKey::FwMembers {
                host: "n1".into(),
                group: "team-a/web".into(),
                shard: 17
            })
        );
        assert_eq!(HostKey::parse("/yun/v1/hosts/n1/fw/members/a/b/64"), None);
        assert_eq!(HostKey::parse("/yun/v1/hosts/n1/fw/members/a//1"), None);
        for bad in ["web", "/web", "ns/", "a/b/c"] {
            assert!(host_fw_members_prefix("n1", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_or_malformed_keys_are_skipped() {
        assert_eq!(HostKey::parse("/yun/v1/hosts/n1/future-thing"), None);
        assert_eq!(HostKey::parse("/yun/v1/hosts/n1/report/vms/u1/x"), None);
        // The layout before the report/ split is not this contract's: skipped, not misread.
        assert_eq!(HostKey::parse("/yun/v1/hosts/n1/vms/u1/status"), None);
        assert_eq!(HostKey::parse("/yun/v1/hosts/N1/info"), None);
        assert_eq!(HostKey::parse("/other/n1/info"), None);
    }

    #[test]
    fn host_prefix_does_not_cover_longer_names() {
        let p = host_prefix("a").unwrap();
        assert!(!host_info("ab").unwrap().starts_with(&p));
        assert!(host_info("a").unwrap().starts_with(&p));
    }

    #[test]
    fn key_builders_refuse_slashes() {
        assert!(vm_desired("n1", "a/b").is_err());
    }
}
