//! The host firewall through `nft` (the `nftables` crate's JSON helper): every change is one
//! atomic transaction, an element delta when only ports or memberships changed, a full replace
//! of Yun's two tables otherwise. Drift (someone edited or flushed Yun's tables) is found by
//! listing the tables and comparing them with what was applied, and repaired.

use nftables::helper::{NftablesError, apply_ruleset_with_args};
use nftables::schema::Nftables;
use yun_firewall::{
    Delta, Family, HostFirewall, ModelError, Observed, ObservedError, Ruleset, TABLE,
    apply_member_changes, compile, element_delta, element_drift, full_replace, member_changes,
};

/// The narrow boundary the agent's network loop uses (a fake can stand in for unit tests of
/// callers; the real one is [`NftFirewall`]).
pub trait HostFirewallDriver {
    /// Makes the kernel's Yun tables match `fw`. Invalid input changes nothing.
    fn apply(&mut self, fw: &HostFirewall) -> Result<Applied, FirewallError>;
    /// Compares the kernel's Yun tables with the last applied ruleset and repairs them;
    /// `Some(what was wrong)` when it repaired.
    fn repair_drift(&mut self) -> Result<Option<String>, FirewallError>;
}

/// What one [`HostFirewallDriver::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Delta { added: usize, deleted: usize },
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("firewall input refused: {0}")]
    Invalid(#[from] ModelError),
    #[error("nft failed ({what}): {source}")]
    Nft {
        what: &'static str,
        #[source]
        source: NftablesError,
    },
    #[error("nft list table {family} yun failed: {reason}")]
    List {
        family: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Listing(#[from] ObservedError),
}

/// How `nft` is run: `nft` itself on a host, or `ip netns exec <ns> nft` in a test namespace.
#[derive(Debug, Clone)]
pub struct NftCommand {
    program: String,
    args: Vec<String>,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            program: "nft".into(),
            args: Vec::new(),
        }
    }
}

impl NftCommand {
    /// `nft` inside network namespace `ns` (namespaces the tests create).
    pub fn in_netns(ns: &str) -> Self {
        NftCommand {
            program: "ip".into(),
            args: vec!["netns".into(), "exec".into(), ns.into(), "nft".into()],
        }
    }

    /// Runs one transaction (`nft -j -f -`): all of it applies, or none.
    pub fn run(&self, batch: &Nftables, what: &'static str) -> Result<(), FirewallError> {
        apply_ruleset_with_args(batch, Some(self.program.as_str()), self.args.iter())
            .map_err(|source| FirewallError::Nft { what, source })
    }

    /// `nft -j list table <family> yun`; `None` when the table does not exist.
    fn list(&self, family: Family) -> Result<Option<String>, FirewallError> {
        let out = std::process::Command::new(&self.program)
            .args(&self.args)
            .args(["-j", "list", "table", family.as_str(), TABLE])
            .output()
            .map_err(|e| FirewallError::List {
                family: family.as_str(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file") {
            return Ok(None);
        }
        Err(FirewallError::List {
            family: family.as_str(),
            reason: stderr.trim().to_owned(),
        })
    }

    /// Yun's tables as the kernel holds them.
    pub fn observe(&self) -> Result<Observed, FirewallError> {
        let mut listings = Vec::new();
        for f in Family::ALL {
            if let Some(l) = self.list(f)? {
                listings.push(l);
            }
        }
        let refs: Vec<&str> = listings.iter().map(String::as_str).collect();
        Ok(Observed::parse(&refs)?)
    }
}

struct AppliedState {
    /// The input last applied, for the membership fast path.
    input: HostFirewall,
    ruleset: Ruleset,
    /// The kernel's own rendering of the applied rules (elements cleared), for drift checks.
    rules: Observed,
}

/// The real firewall driver.
pub struct NftFirewall {
    cmd: NftCommand,
    state: Option<AppliedState>,
    repairs: u64,
}

impl std::fmt::Debug for NftFirewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftFirewall")
            .field("cmd", &self.cmd)
            .field("applied", &self.state.is_some())
            .field("repairs", &self.repairs)
            .finish()
    }
}

impl NftFirewall {
    pub fn new(cmd: NftCommand) -> Self {
        NftFirewall {
            cmd,
            state: None,
            repairs: 0,
        }
    }

    /// Drift repairs so far.
    pub fn repairs(&self) -> u64 {
        self.repairs
    }

    pub fn command(&self) -> &NftCommand {
        &self.cmd
    }

    fn replace(&mut self, input: HostFirewall, want: Ruleset) -> Result<(), FirewallError> {
        // A failed replace leaves the kernel as it was, which is no longer known to match.
        self.state = None;
        self.cmd.run(&full_replace(&want), "replace Yun's tables")?;
        let mut rules = self.cmd.observe()?;
        rules.elements.clear();
        self.state = Some(AppliedState {
            input,
            ruleset: want,
            rules,
        });
        Ok(())
    }

    /// Membership-only changes: applied to the stored ruleset in place (no recompile, no
    /// full diff). `None` when something else changed, or the kernel refused the delta.
    fn try_member_delta(&mut self, fw: &HostFirewall) -> Option<Applied> {
        let state = self.state.as_mut()?;
        let changes = member_changes(&state.input, fw)?;
        let delta = apply_member_changes(&mut state.ruleset, &mut state.input, &changes);
        self.run_delta(delta)
    }

    fn run_delta(&mut self, delta: Delta) -> Option<Applied> {
        if delta.is_empty() {
            return Some(Applied::Unchanged);
        }
        match self.cmd.run(&delta.batch, "element delta") {
            Ok(()) => Some(Applied::Delta {
                added: delta.added,
                deleted: delta.deleted,
            }),
            // The kernel disagreed with what we last applied (drift): rebuild instead.
            Err(e) => {
                tracing::warn!(error = %e, "firewall delta refused; replacing Yun's tables");
                self.state = None;
                None
            }
        }
    }
}

impl HostFirewallDriver for NftFirewall {
    fn apply(&mut self, fw: &HostFirewall) -> Result<Applied, FirewallError> {
        if let Some(done) = self.try_member_delta(fw) {
            return Ok(done);
        }
        let want = compile(fw)?;
        let delta = self
            .state
            .as_ref()
            .and_then(|state| element_delta(&state.ruleset, &want));
        if let Some(done) = delta.and_then(|d| self.run_delta(d))
            && let Some(state) = &mut self.state
        {
            state.ruleset = want;
            state.input = fw.clone();
            return Ok(done);
        }
        self.replace(fw.clone(), want)?;
        Ok(Applied::Replaced)
    }

    fn repair_drift(&mut self) -> Result<Option<String>, FirewallError> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let seen = self.cmd.observe()?;
        // `same_rules` ignores elements, so the listing is compared as it is (no copy).
        let what = if !seen.same_rules(&state.rules) {
            "tables, chains or rules differ from what was applied".to_owned()
        } else {
            let d = element_drift(&state.ruleset, &seen);
            if d.is_empty() {
                return Ok(None);
            }
            d.join("; ")
        };
        let (input, want) = (state.input.clone(), state.ruleset.clone());
        self.replace(input, want)?;
        self.repairs += 1;
        tracing::warn!(drift = %what, repairs = self.repairs, "repaired firewall drift");
        Ok(Some(what))
    }
}
