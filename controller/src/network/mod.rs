//! The controller's network logic for tenant isolation (pure, no I/O).
//!
//! - [`ipam`]: hands out a Network's addresses (lowest free first, fixed ones checked).
//! - [`tenancy`]: which Networks may be used: within a tenant no two CIDRs overlap, within the
//!   fleet no two networks share a VLAN id or VNI; the older one wins.
//! - [`groups`]: a SecurityGroup spec as the firewall compiler's [`yun_firewall::GroupRules`].
//! - [`nics`]: deterministic interface, bridge and MAC names of a VM's NICs.
//! - [`publish`]: the per-host network records the fleet should hold, as writes.
//! - [`status`]: `Network` and `SecurityGroup` status from the above.
//! - [`snapshot`]: the network pass both modes run: who gets which address, in what order.

pub mod groups;
pub mod ipam;
pub mod nics;
pub mod publish;
pub mod snapshot;
pub mod status;
pub mod tenancy;

use std::fmt;

/// A namespaced object by namespace (the tenant) and name; displayed `namespace/name`, the form
/// security group ids take in the firewall model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The firewall model's id of security group `name` in `namespace`: `namespace/name`.
pub fn group_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}
