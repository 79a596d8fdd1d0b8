//! Yun's firewall compiler (pure, no I/O).
//!
//! A host's VM ports, the security groups they use and the members of the groups those rules
//! name compile to one Yun-owned nftables ruleset ([`compile`]) built on a port-binding map,
//! member sets and per-profile chains, so its size grows with rules + members, never rules ×
//! ports. [`render`] turns a ruleset into one atomic `nft` transaction: a full replace, or,
//! when only memberships or ports changed, just the element adds and deletes.
//! [`observed`] reads the kernel's tables back for drift detection.

pub mod compile;
pub mod members;
pub mod model;
pub mod names;
pub mod observed;
pub mod render;
pub mod ruleset;
mod stmts;

pub use compile::compile;
pub use members::{MemberChange, apply_member_changes, member_changes};
pub use model::{
    GroupRules, HostFirewall, Mac, ModelError, PORT_PREFIX, Port, Proto, Remote, Rule,
};
pub use observed::{Observed, ObservedError, element_drift};
pub use render::{Delta, element_delta, full_replace};
pub use ruleset::{Family, Ruleset, RulesetSize, TABLE};
