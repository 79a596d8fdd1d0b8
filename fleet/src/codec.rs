//! Encoding and decoding of fleet-bus records. Decoding never panics: every failure is an error
//! that names the key, so an operator can find the offending record with `etcdctl get`.

use crate::records::{SCHEMA_VERSION, Versioned};
use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("record at {key} is not valid: {source}")]
    Malformed {
        key: String,
        source: serde_json::Error,
    },
    #[error("record at {key} has schema version {found}, this build understands up to {supported}")]
    TooNew {
        key: String,
        found: u32,
        supported: u32,
    },
    #[error("record for {key} could not be encoded: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
}

/// Encodes a record as compact JSON.
pub fn encode<T: Serialize>(key: &str, record: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(record).map_err(|source| CodecError::Encode {
        key: key.to_owned(),
        source,
    })
}

/// Decodes the record stored at `key`.
pub fn decode<T: DeserializeOwned + Versioned>(key: &str, bytes: &[u8]) -> Result<T, CodecError> {
    let record: T = serde_json::from_slice(bytes).map_err(|source| CodecError::Malformed {
        key: key.to_owned(),
        source,
    })?;
    if record.version() > SCHEMA_VERSION {
        return Err(CodecError::TooNew {
            key: key.to_owned(),
            found: record.version(),
            supported: SCHEMA_VERSION,
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;
    use std::collections::BTreeMap;

    fn sample_vm() -> VmDesired {
        VmDesired {
            v: SCHEMA_VERSION,
            uid: "6f1c2a3b-0000-4000-8000-000000000001".into(),
            namespace: "default".into(),
            name: "web-1".into(),
            generation: 3,
            resources: Resources {
                cpus: 2,
                memory_mib: 2048,
                disk_gib: 10,
            },
            image: ImageSpec {
                name: "default/debian-12".into(),
                disk: Artifact {
                    source: "file:///srv/images/debian-12.qcow2".into(),
                    sha256: "ab".repeat(32),
                },
                format: DiskFormat::Qcow2,
                kernel: None,
                initrd: None,
                cmdline: None,
            },
            hostname: "web-1".into(),
            user_data: Some("#cloud-config\n".into()),
            run_strategy: RunStrategy::Always,
            nics: Vec::new(),
            security_groups: Vec::new(),
            volumes: Vec::new(),
            hold: None,
            identity: None,
        }
    }

    #[test]
    fn records_round_trip() {
        let vm = sample_vm();
        let bytes = encode("k", &vm).unwrap();
        assert_eq!(decode::<VmDesired>("k", &bytes).unwrap(), vm);
    }

    #[test]
    fn records_stay_within_size_budget() {
        let mut vm = sample_vm();
        vm.user_data = None;
        assert!(encode("k", &vm).unwrap().len() <= 2048);
        let host = HostInfo {
            v: SCHEMA_VERSION,
            name: "rack12-node-0042".into(),
            cpus: 128,
            memory_mib: 1024 * 1024,
            disk_gib: 8000,
            labels: BTreeMap::from([
                ("zone".to_string(), "eu-west-1a".to_string()),
                ("rack".to_string(), "r12".to_string()),
                ("power-domain".to_string(), "pd3".to_string()),
            ]),
            agent_version: "0.1.0".into(),
            virt_type: "kvm".into(),
            started_at: "2026-11-24T06:00:00Z".into(),
            tunnel_ip: None,
            seal_key: None,
            metrics_address: Some(
                "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                    .parse()
                    .unwrap(),
            ),
        };
        assert!(encode("k", &host).unwrap().len() <= 1024);
    }

    #[test]
    fn malformed_record_names_its_key() {
        let err = decode::<VmDesired>("/yun/v1/hosts/n1/vms/u1", b"{not json").unwrap_err();
        assert!(err.to_string().contains("/yun/v1/hosts/n1/vms/u1"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused_not_misread() {
        let mut value = serde_json::to_value(sample_vm()).unwrap();
        value["v"] = serde_json::json!(SCHEMA_VERSION + 1);
        let err = decode::<VmDesired>("key-x", value.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, CodecError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("key-x"));
    }
}
