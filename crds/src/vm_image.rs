//! `VmImage`: a template image VMs boot from (namespaced).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::validation::{
    Checker, FILE_SOURCE_PATTERN, NameRule, SHA256_PATTERN, Scope, ValidationErrors,
};

/// Bounds of `spec.os`.
pub const OS_MIN: usize = 1;
pub const OS_MAX: usize = 63;
/// Maximum length of an artifact `source` (Linux `PATH_MAX` plus the scheme).
pub const SOURCE_MAX: usize = 4096;
/// Maximum length of `spec.cmdline` (Linux's x86 `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX: usize = 2048;

/// CEL rule on the spec: an initrd is only used with a direct kernel boot.
pub const INITRD_NEEDS_KERNEL_RULE: &str = "!has(self.initrd) || has(self.kernel)";
/// CEL rule on the spec: a kernel command line is only used with a direct kernel boot.
pub const CMDLINE_NEEDS_KERNEL_RULE: &str = "!has(self.cmdline) || has(self.kernel)";

/// A template image: a root disk and, for direct kernel boot, a kernel, initrd and command line.
/// Agents cache artifacts by checksum; every VM disk is a copy-on-write overlay on the cached disk.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
// clippy reads the repeated `type_ = "string"` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "VmImage",
    namespaced,
    shortname = "vmi",
    status = "VmImageStatus",
    derive = "PartialEq",
    doc = "A template image that VirtualMachines boot from.",
    printcolumn(name = "OS", type_ = "string", json_path = ".spec.os"),
    printcolumn(name = "Format", type_ = "string", json_path = ".spec.disk.format"),
    printcolumn(
        name = "Kernel",
        type_ = "string",
        json_path = ".spec.kernel.source",
        description = "direct-boot kernel, if any"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new(INITRD_NEEDS_KERNEL_RULE).message("initrd requires kernel").field_path(".initrd"),
    validation = kube::core::Rule::new(CMDLINE_NEEDS_KERNEL_RULE).message("cmdline requires kernel").field_path(".cmdline")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmImageSpec {
    /// Operating system of the image, informational (e.g. `debian-12`).
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = OS_MIN, max = OS_MAX))]
    pub os: String,
    /// The root disk template.
    pub disk: DiskArtifact,
    /// Kernel for direct boot (QEMU `-kernel`); without it the disk's own bootloader is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Artifact")]
    pub kernel: Option<Artifact>,
    /// Initial ramdisk for direct boot. Requires `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Artifact")]
    pub initrd: Option<Artifact>,
    /// Kernel command line for direct boot. Requires `kernel`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = CMDLINE_MAX))]
    pub cmdline: Option<String>,
}

/// Disk image format.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// The root disk template, identified by content.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskArtifact {
    /// Where the agent fetches the file. Only `file:///absolute/path` is supported in this
    /// version: the file must exist at that path on every host that runs a VM from this image.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = SOURCE_MAX), regex(pattern = FILE_SOURCE_PATTERN))]
    pub source: String,
    pub format: DiskFormat,
    /// Lowercase hex SHA-256 of the file; the agent verifies it and caches by it.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(regex(pattern = SHA256_PATTERN))]
    pub sha256: String,
}

/// A kernel or initrd file, identified by content.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    /// Where the agent fetches the file. Only `file:///absolute/path` is supported in this version.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = SOURCE_MAX), regex(pattern = FILE_SOURCE_PATTERN))]
    pub source: String,
    /// Lowercase hex SHA-256 of the file; the agent verifies it and caches by it.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(regex(pattern = SHA256_PATTERN))]
    pub sha256: String,
}

/// What the controller observes about an image.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmImageStatus {
    /// Hosts that hold the image in their cache.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Size of the disk file in bytes, once a host has fetched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

fn check_artifact(c: &mut Checker, path: &str, source: &str, sha256: &str) {
    c.chars(&format!("{path}.source"), source, 0, SOURCE_MAX);
    c.file_source(&format!("{path}.source"), source);
    c.sha256(&format!("{path}.sha256"), sha256);
}

impl VmImageSpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths start
    /// at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    fn check(&self, c: &mut Checker) {
        c.chars("spec.os", &self.os, OS_MIN, OS_MAX);
        check_artifact(c, "spec.disk", &self.disk.source, &self.disk.sha256);
        if let Some(k) = &self.kernel {
            check_artifact(c, "spec.kernel", &k.source, &k.sha256);
        }
        if let Some(i) = &self.initrd {
            check_artifact(c, "spec.initrd", &i.source, &i.sha256);
            if self.kernel.is_none() {
                c.push("spec.initrd", "initrd requires kernel");
            }
        }
        if let Some(cmdline) = &self.cmdline {
            c.chars("spec.cmdline", cmdline, 0, CMDLINE_MAX);
            if self.kernel.is_none() {
                c.push("spec.cmdline", "cmdline requires kernel");
            }
        }
    }
}

impl VmImage {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label) and spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "VmImage",
            Scope::Namespaced,
            NameRule::Subdomain,
        );
        self.spec.check(&mut c);
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn artifact(path: &str) -> Artifact {
        Artifact {
            source: format!("file://{path}"),
            sha256: SUM.into(),
        }
    }

    fn spec() -> VmImageSpec {
        VmImageSpec {
            os: "debian-12".into(),
            disk: DiskArtifact {
                source: "file:///var/lib/yun/d.qcow2".into(),
                format: DiskFormat::Qcow2,
                sha256: SUM.into(),
            },
            kernel: Some(artifact("/var/lib/yun/vmlinuz")),
            initrd: Some(artifact("/var/lib/yun/initrd")),
            cmdline: Some("console=ttyS0".into()),
        }
    }

    #[test]
    fn direct_boot_image_is_valid() {
        assert_eq!(spec().validate(), Ok(()));
        assert_eq!(
            VmImageSpec {
                kernel: None,
                initrd: None,
                cmdline: None,
                ..spec()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn initrd_and_cmdline_require_kernel() {
        let e = VmImageSpec {
            kernel: None,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.initrd: initrd requires kernel; spec.cmdline: cmdline requires kernel"
        );
    }

    #[test]
    fn sources_must_be_file_urls_and_sums_hex() {
        let mut s = spec();
        s.disk.source = "https://example.com/d.qcow2".into();
        s.disk.sha256 = SUM.to_uppercase();
        s.kernel = Some(Artifact {
            source: "file://relative".into(),
            sha256: "abc".into(),
        });
        let e = s.validate().unwrap_err();
        for p in [
            "spec.disk.source",
            "spec.disk.sha256",
            "spec.kernel.source",
            "spec.kernel.sha256",
        ] {
            assert!(e.has_path(p), "{p} missing in {e}");
        }
        assert_eq!(e.errors().len(), 4, "{e}");
    }

    #[test]
    fn os_and_cmdline_lengths() {
        let e = VmImageSpec {
            os: String::new(),
            cmdline: Some("x".repeat(CMDLINE_MAX + 1)),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert!(e.has_path("spec.os") && e.has_path("spec.cmdline"), "{e}");
    }
}
