//! `yun-controller run` flags for Keystone (tenants and VM identities).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use yun_controller::identity::{DEFAULT_VM_ROLES, Identity, IdentityConfig};

#[derive(Debug, ClapArgs)]
pub struct KeystoneArgs {
    /// The controller's Keystone credentials: a TOML file (application credential, or a
    /// password for bootstrap) that only its owner may read. Without it, tenants are not
    /// checked against Keystone projects and VM identities are refused.
    #[arg(long, env = "YUN_KEYSTONE_CREDENTIALS")]
    pub keystone_credentials: Option<PathBuf>,
    /// Keystone's v3 URL as guests reach it (default: the credentials' auth_url).
    #[arg(long, env = "YUN_KEYSTONE_GUEST_AUTH_URL")]
    pub keystone_guest_auth_url: Option<String>,
    /// Keystone domain (name) of tenant projects and per-VM users.
    #[arg(long, default_value = "Default")]
    pub keystone_domain: String,
    /// Region name written into guests' clouds.yaml.
    #[arg(long)]
    pub keystone_region: Option<String>,
    /// Age at which a VM credential is rotated, e.g. 30d, 12h, 90m.
    #[arg(long, default_value = "30d", value_parser = parse_period)]
    pub identity_rotation: Duration,
    /// Roles VMs may ask for (comma-separated); `admin` is never allowed.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VM_ROLES.iter().map(|r| r.to_string()))]
    pub vm_identity_roles: Vec<String>,
}

/// `30d`, `12h`, `90m` or `45s`.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a period like 30d, 12h, 90m or 45s");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    match n.checked_mul(secs) {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(bad()),
    }
}

impl KeystoneArgs {
    /// Connects when credentials are given; fails start-up with the file or Keystone named.
    pub async fn connect(&self) -> anyhow::Result<Identity> {
        let Some(path) = &self.keystone_credentials else {
            tracing::warn!(
                "no --keystone-credentials: tenants are not checked against Keystone, VM identities are refused"
            );
            return Ok(Identity::disabled());
        };
        if let Some(bad) = self
            .vm_identity_roles
            .iter()
            .find(|r| r.eq_ignore_ascii_case("admin"))
        {
            anyhow::bail!("--vm-identity-roles: {bad:?} may never be given to a VM");
        }
        let cfg = IdentityConfig {
            credentials: path.clone(),
            guest_auth_url: self.keystone_guest_auth_url.clone(),
            rotation: self.identity_rotation,
            domain: self.keystone_domain.clone(),
            allowed_roles: self.vm_identity_roles.clone(),
            region: self.keystone_region.clone(),
        };
        Identity::connect(cfg)
            .await
            .with_context(|| format!("connecting to Keystone with {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_bad_ones_are_named() {
        assert_eq!(parse_period("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_period("90m"), Ok(Duration::from_secs(5_400)));
        for bad in ["", "d", "0h", "3w", "-1d", "1.5h"] {
            let e = parse_period(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
