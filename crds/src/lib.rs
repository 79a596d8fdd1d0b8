//! Yun's API types, group `yun.dev`, version `v1alpha1`: `Host`, `VmImage`, `Network`,
//! `SecurityGroup`, `Volume`, `VirtualMachine`, `DeviceIdentity`. Namespaced kinds belong to a tenant: the namespace.
//!
//! Pure data and checks, no I/O. Every kind has two layers of validation that agree: the CRD
//! schema (bounds, patterns, CEL rules; enforced by the API server) and `validate()` (enforced by
//! the controller in bootstrap mode, where [`parse_manifests`] reads manifests from files).

pub mod condition;
pub mod device_identity;
pub mod host;
pub mod ipv4;
pub mod manifest;
pub mod network;
pub mod overcommit;
pub mod scheduling;
pub mod security_group;
mod strict;
pub mod validation;
pub mod virtual_machine;
pub mod vm_identity;
pub mod vm_image;
pub mod vm_network;
pub mod vm_volume;
pub mod volume;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use condition::{Condition, ConditionStatus, find_condition, set_condition};
pub use device_identity::{
    DeviceIdentity, DeviceIdentitySpec, DeviceIdentityStatus, DeviceView, RetiringDeviceCredential,
};
pub use host::{Bmc, Host, HostResources, HostSpec, HostStatus};
pub use ipv4::Ipv4Error;
pub use manifest::{
    API_VERSION, DEFAULT_NAMESPACE, DocumentError, Manifest, ManifestError, ObjectRef,
    parse_manifests,
};
pub use network::{Network, NetworkError, NetworkSpec, NetworkStatus, Segment, Vlan, Vxlan};
pub use overcommit::{Overcommit, OvercommitRatios};
pub use scheduling::{PlacementPolicy, QosClass, SpreadConstraint, Topology, VmScheduling};
pub use security_group::{
    PortRange, Protocol, Remote, SecurityGroup, SecurityGroupSpec, SecurityGroupStatus, SgRule,
};
pub use validation::{FieldError, ValidationErrors};
pub use virtual_machine::{
    RunStrategy, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus, VmPhase,
};
pub use vm_identity::VmIdentityRequest;
pub use vm_image::{Artifact, DiskArtifact, DiskFormat, VmImage, VmImageSpec, VmImageStatus};
pub use vm_network::{NetworkAttachment, VmInterfaceStatus};
pub use vm_volume::VolumeAttachment;
pub use volume::{
    AccessMode, Chap, Driver, FcVolume, IscsiVolume, LocalVolume, NfsVolume, SecretRef, Volume,
    VolumePhase, VolumeSpec, VolumeStatus,
};

/// API group of every Yun kind.
pub const GROUP: &str = "yun.dev";
/// API version of every Yun kind in this build.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinitions of every kind, in install order (images, networks and security
/// groups before the VMs that use them).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Host::crd(),
        VmImage::crd(),
        Network::crd(),
        SecurityGroup::crd(),
        Volume::crd(),
        VirtualMachine::crd(),
        DeviceIdentity::crd(),
    ]
}
