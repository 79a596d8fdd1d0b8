//! Agent version skew. Policy (design, issue 7): an agent one minor version behind the
//! controller keeps working; more than one minor behind, or an older major, is unsupported.
//! The controller is upgraded first, so an agent is never newer than it: every agent behind
//! the controller is reported, and so is one ahead of it (`ahead`: the order was broken; the
//! Ansible upgrade play refuses to install such an agent, see docs/ops/ansible.md).

use super::ComplianceError;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use yun_fleet_etcd::HostView;

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]`. A pre-release ranks below its release; two pre-releases
/// of the same version are not ordered (neither is behind); build metadata is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

impl FromStr for AgentVersion {
    type Err = ComplianceError;

    fn from_str(s: &str) -> Result<AgentVersion, ComplianceError> {
        let fail = |why| ComplianceError::Version {
            version: s.to_owned(),
            why,
        };
        let without_build = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match without_build.split_once('-') {
            Some((_, "")) => return Err(fail("empty pre-release after '-'")),
            Some((core, pre)) => (core, Some(pre.to_owned())),
            None => (without_build, None),
        };
        let mut parts = core.split('.').map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("each part must be a number"));
            }
            p.parse::<u64>().map_err(|_| fail("a part is too large"))
        });
        let (Some(major), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected exactly three dot-separated numbers"));
        };
        Ok(AgentVersion {
            major: major?,
            minor: minor?,
            patch: patch?,
            pre,
        })
    }
}

impl fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.pre {
            Some(pre) => write!(f, "-{pre}"),
            None => Ok(()),
        }
    }
}

/// Where a host stands against the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Behind by at most one minor version: still supported, upgrade it.
    Behind,
    /// More than one minor version (or a major version) behind: outside the skew policy.
    Unsupported,
    /// Newer than the controller: outside the policy (the controller is upgraded first).
    Ahead,
    /// The agent reports a version that is not `MAJOR.MINOR.PATCH`.
    Unparseable,
    /// The bus lists VMs on the host but no agent is registered (its lease expired): the version
    /// cannot be checked.
    Unregistered,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Behind => "behind",
            HostStatus::Unsupported => "unsupported",
            HostStatus::Ahead => "ahead",
            HostStatus::Unparseable => "unparseable",
            HostStatus::Unregistered => "unregistered",
        }
    }
}

/// A host whose agent is not known to be at the controller's version (or one it allows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostVersionFinding {
    pub host: String,
    /// What the agent reports (`None` when no agent is registered).
    pub agent_version: Option<String>,
    pub status: HostStatus,
    /// The finding in words.
    pub detail: String,
}

/// Where `agent` stands against `controller`: `None` when at its version (or an unordered
/// pre-release of it).
pub fn skew(agent: &AgentVersion, controller: &AgentVersion) -> Option<HostStatus> {
    match agent.major.cmp(&controller.major) {
        Ordering::Less => return Some(HostStatus::Unsupported),
        Ordering::Greater => return Some(HostStatus::Ahead),
        Ordering::Equal => {}
    }
    match controller.minor.checked_sub(agent.minor) {
        None => Some(HostStatus::Ahead),
        Some(2..) => Some(HostStatus::Unsupported),
        Some(1) => Some(HostStatus::Behind),
        Some(0) => match agent.patch.cmp(&controller.patch) {
            Ordering::Less => Some(HostStatus::Behind),
            Ordering::Greater => Some(HostStatus::Ahead),
            Ordering::Equal => match (&agent.pre, &controller.pre) {
                (Some(_), None) => Some(HostStatus::Behind),
                (None, Some(_)) => Some(HostStatus::Ahead),
                _ => None,
            },
        },
    }
}

/// The version finding for one host, if any.
pub fn host_finding(
    host: &str,
    view: &HostView,
    controller: &AgentVersion,
) -> Option<HostVersionFinding> {
    let finding = |agent_version: Option<&str>, status, detail| {
        Some(HostVersionFinding {
            host: host.to_owned(),
            agent_version: agent_version.map(str::to_owned),
            status,
            detail,
        })
    };
    let Some(info) = &view.info else {
        if view.desired.is_empty() {
            return None;
        }
        return finding(
            None,
            HostStatus::Unregistered,
            "no agent registered (lease expired) while VMs are still desired here: version unknown"
                .to_owned(),
        );
    };
    let reported = info.agent_version.as_str();
    let agent = match reported.parse::<AgentVersion>() {
        Ok(v) => v,
        Err(e) => {
            return finding(
                Some(reported),
                HostStatus::Unparseable,
                format!("cannot be compared with the controller's {controller}: {e}"),
            );
        }
    };
    let status = skew(&agent, controller)?;
    let detail = match status {
        HostStatus::Ahead => format!(
            "newer than the controller's {controller}: outside the skew policy (the controller \
             is upgraded first); upgrade the controller or roll the agent back"
        ),
        HostStatus::Unsupported if agent.major < controller.major => format!(
            "major version {} behind the controller's {controller}: unsupported, upgrade now",
            agent.major
        ),
        HostStatus::Unsupported => format!(
            "{} minor versions behind the controller's {controller}: outside the skew policy \
             (one minor behind), upgrade now",
            controller.minor - agent.minor
        ),
        _ if agent.minor < controller.minor => format!(
            "one minor version behind the controller's {controller}: still supported, upgrade \
             before the next controller release"
        ),
        _ => format!("behind the controller's {controller} within the same minor: supported"),
    };
    finding(Some(reported), status, detail)
}
