//! `VirtualMachine.spec.identity`: a Keystone identity for the guest. The controller creates an
//! application credential scoped to the VM's project (its namespace's tenant) with these roles,
//! hands it to the guest as `/etc/openstack/clouds.yaml` through the seed, rotates it and
//! revokes it when the VM is deleted (docs/ops/identity.md).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Checker, shown};

/// At most this many roles on one VM credential.
pub const IDENTITY_ROLES_MAX: usize = 8;
/// A Keystone role name as Yun accepts it.
pub const ROLE_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";
/// CEL rule on `spec.identity.roles`: a guest never gets an admin credential.
pub const NO_ADMIN_RULE: &str = "self.all(r, r.lowerAscii() != 'admin')";
const NO_ADMIN_MESSAGE: &str = "must not grant the admin role to a guest";

/// The Keystone identity a VM asks for.
#[derive(Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmIdentityRequest {
    /// Keystone role names on the VM's project, 1 to 8, never `admin` (e.g. `member`,
    /// `reader`). The credential never carries more than these.
    #[serde(deserialize_with = "crate::strict::string_list")]
    #[schemars(
        length(min = 1, max = IDENTITY_ROLES_MAX),
        inner(length(min = 1, max = 64), regex(pattern = ROLE_PATTERN))
    )]
    #[x_kube(validation = kube::core::Rule::new(NO_ADMIN_RULE).message(NO_ADMIN_MESSAGE))]
    pub roles: Vec<String>,
}

/// Checks `spec.identity` the way the CRD schema and its CEL rule do.
pub(crate) fn check_identity(c: &mut Checker, identity: &VmIdentityRequest) {
    let path = "spec.identity.roles";
    if identity.roles.is_empty() {
        c.push(path, "must name at least one role");
    }
    c.max_items(path, identity.roles.len(), IDENTITY_ROLES_MAX);
    for (i, role) in identity.roles.iter().enumerate() {
        let at = format!("{path}[{i}]");
        c.matches(&at, role, ROLE_PATTERN, "a Keystone role name");
        if role.eq_ignore_ascii_case("admin") {
            c.push(&at, format!("{NO_ADMIN_MESSAGE}, got {}", shown(role)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(roles: &[&str]) -> Vec<String> {
        let mut c = Checker::new();
        check_identity(
            &mut c,
            &VmIdentityRequest {
                roles: roles.iter().map(|r| r.to_string()).collect(),
            },
        );
        match c.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.errors().iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn ordinary_roles_pass() {
        assert!(errors(&["member", "reader", "load-balancer_member"]).is_empty());
    }

    #[test]
    fn admin_empty_and_malformed_roles_are_refused_by_path() {
        let e = errors(&["member", "Admin"]);
        assert!(
            e.iter()
                .any(|m| m.contains("spec.identity.roles[1]") && m.contains("admin")),
            "{e:?}"
        );
        assert!(errors(&[]).iter().any(|m| m.contains("at least one")));
        let e = errors(&["bad role"]);
        assert!(
            e.iter().any(|m| m.contains("spec.identity.roles[0]")),
            "{e:?}"
        );
        assert!(!errors(&["a"; 9]).is_empty());
    }

    #[test]
    fn the_pattern_compiles() {
        assert!(regex::Regex::new(ROLE_PATTERN).is_ok());
    }
}
