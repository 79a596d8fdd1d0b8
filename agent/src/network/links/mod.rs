//! Host links for tenant networks, through netlink: one Linux bridge per network, extended
//! to other hosts by a VXLAN device (static flood entries per peer, no multicast) or a VLAN
//! sub-interface of an uplink, with the VM ports enslaved at the network's MTU; plus the
//! br_netfilter sysctl the firewall relies on.
//!
//! [`plan`] is the pure diff (observed → ordered [`LinkOp`]s); [`NetlinkLinks`] observes the
//! kernel and executes the plan. Only devices named `yb*`/`yx*`/`yv*` are ever deleted; VM
//! ports (`yt*`) are only sized, attached and brought up.

mod observe;
mod plan;
mod rtnl;
mod want;

#[cfg(test)]
mod tests;

use std::future::Future;

pub use plan::{LinkKind, LinkOp, Observed, ObservedLink, Plan, plan};
pub use rtnl::NetlinkLinks;
pub use want::{
    BRIDGE_PREFIX, HostNetworks, MTU_MAX, MTU_MIN, NetworkLink, OWNED_PREFIXES, PORT_PREFIX,
    PortLink, SegmentLink, VLAN_ID_MAX, VLAN_PREFIX, VNI_MAX, VXLAN_PORT, VXLAN_PREFIX, WantError,
    is_owned, validate,
};

/// The narrow boundary the agent's network loop uses (the real one is [`NetlinkLinks`]).
pub trait HostLinks {
    /// Makes this host's tenant links match `want`. Invalid input changes nothing.
    fn apply(
        &mut self,
        want: &HostNetworks,
    ) -> impl Future<Output = Result<LinkChanges, LinksError>> + Send;
}

/// What one [`HostLinks::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChanges {
    /// Operations executed, in order; empty when the host already matched.
    pub applied: Vec<LinkOp>,
    /// Wanted ports that do not exist (yet); applied again once libvirt creates them.
    pub missing_ports: Vec<String>,
}

impl LinkChanges {
    /// Nothing was changed (missing ports change nothing either).
    pub fn is_unchanged(&self) -> bool {
        self.applied.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    #[error("links input refused: {0}")]
    Invalid(#[from] WantError),
    #[error("{field}: device {name:?} does not exist on this host")]
    DeviceMissing { field: String, name: String },
    #[error(
        "br_netfilter is not loaded (no net.bridge.bridge-nf-call-iptables): bridged guest \
         traffic would bypass the firewall"
    )]
    NoBridgeNetfilter,
    #[error("NetlinkLinks must be created inside a Tokio runtime")]
    NoRuntime,
    #[error("network namespace {name:?}: {reason}")]
    Netns { name: String, reason: String },
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("bridge-nf-call-iptables sysctl: {0}")]
    Sysctl(#[source] std::io::Error),
    #[error("netlink {what} failed: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("device {0:?} vanished while being configured")]
    Vanished(String),
}

impl LinksError {
    /// The errno of a netlink error (e.g. `EOPNOTSUPP` for a device kind this kernel lacks).
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinksError::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            } => Some(-e.raw_code()),
            _ => None,
        }
    }
}
