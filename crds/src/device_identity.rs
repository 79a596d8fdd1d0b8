//! `DeviceIdentity`: a Keystone identity for a third-party device (a firewall appliance, an
//! IDS) that needs to read some of its tenant's state. The controller gives the device its own
//! Keystone user holding exactly `roles` on the namespace's project and one restricted
//! application credential, delivers the credential to the operator, and lets tokens of that
//! credential read the views listed in `view` (read-only) from the controller
//! (docs/ops/identity.md).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::validation::{Checker, NameRule, Scope, ValidationErrors, shown};
use crate::vm_identity::{NO_ADMIN_RULE, ROLE_PATTERN};

/// At most this many roles on one device credential.
pub const DEVICE_ROLES_MAX: usize = 4;
/// At most this many entries in `spec.view`.
pub const DEVICE_VIEWS_MAX: usize = 4;
/// Maximum length of `spec.description`.
pub const DEVICE_DESCRIPTION_MAX: usize = 255;
const NO_ADMIN_MESSAGE: &str = "must not grant the admin role to a device";

/// A third-party device's Keystone identity and read-only view of its tenant.
// Several printer columns share `type_ = "string"`: clippy reads them as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "DeviceIdentity",
    namespaced,
    shortname = "ydev",
    status = "DeviceIdentityStatus",
    derive = "PartialEq",
    doc = "A Keystone credential for a third-party device, with a read-only view of its tenant.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Credential",
        type_ = "string",
        json_path = ".status.credentialId"
    ),
    printcolumn(
        name = "Issued",
        type_ = "string",
        json_path = ".status.issuedAt",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceIdentitySpec {
    /// Free text for people: what the device is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = DEVICE_DESCRIPTION_MAX))]
    pub description: Option<String>,
    /// Keystone role names on the namespace's project, 1 to 4, never `admin`; the controller
    /// allows `reader` unless configured otherwise (`--device-identity-roles`).
    #[serde(deserialize_with = "crate::strict::string_list")]
    #[schemars(
        length(min = 1, max = DEVICE_ROLES_MAX),
        inner(length(min = 1, max = 64), regex(pattern = ROLE_PATTERN))
    )]
    #[x_kube(validation = kube::core::Rule::new(NO_ADMIN_RULE).message(NO_ADMIN_MESSAGE))]
    pub roles: Vec<String>,
    /// What the device may read from the controller with its token.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = DEVICE_VIEWS_MAX))]
    pub view: Vec<DeviceView>,
}

/// A read-only view of the namespace: `SecurityGroups` is every security group of the
/// namespace with its rules and member addresses as the controller compiled them
/// (`GET /v1/security-groups`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceView {
    SecurityGroups,
}

/// What the controller observes about a device identity. Conditions: `Ready`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdentityStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The id of the application credential issued (never its secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// RFC 3339 time the credential was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    /// The Keystone user that owns the credential (`yun-device-<uid>`), by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The Keystone project (the namespace's tenant) the credential is scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The roles the credential holds (sorted): a change of `spec.roles` replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// How many times the credential was rotated on schedule; its Keystone user is
    /// `yun-device-<uid>` for 0 and `yun-device-<uid>-r<rotation>` after.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotation: u64,
    /// The credential a scheduled rotation replaced: it stays valid until `until`, so the
    /// device has time to pick up the new one, and is revoked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<RetiringDeviceCredential>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A rotated-out device credential, still valid for a while.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetiringDeviceCredential {
    /// The rotation (see `status.rotation`) it belongs to.
    pub rotation: u64,
    pub credential_id: String,
    /// The Keystone user that owns it, by id.
    pub user_id: String,
    /// RFC 3339 time after which it is revoked.
    pub until: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DeviceIdentitySpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths
    /// start at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    fn check(&self, c: &mut Checker) {
        if let Some(description) = &self.description {
            c.chars("spec.description", description, 0, DEVICE_DESCRIPTION_MAX);
        }
        let path = "spec.roles";
        let before = c.error_count();
        if self.roles.is_empty() {
            c.push(path, "must name at least one role");
        }
        c.max_items(path, self.roles.len(), DEVICE_ROLES_MAX);
        let mut schema_ok = c.error_count() == before;
        for (i, role) in self.roles.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let before = c.error_count();
            c.chars(&at, role, 1, 64);
            if c.error_count() == before {
                c.matches(&at, role, ROLE_PATTERN, "a Keystone role name");
            }
            schema_ok &= c.error_count() == before;
        }
        // As for every CEL rule in this crate, values the schema refuses are not judged again;
        // the API server reports a CEL rule on a list at the list's path.
        if schema_ok
            && let Some(admin) = self.roles.iter().find(|r| r.eq_ignore_ascii_case("admin"))
        {
            c.push(path, format!("{NO_ADMIN_MESSAGE}, got {}", shown(admin)));
        }
        c.max_items("spec.view", self.view.len(), DEVICE_VIEWS_MAX);
    }

    /// Whether tokens of this device may read `view`.
    pub fn may_view(&self, view: DeviceView) -> bool {
        self.view.contains(&view)
    }
}

impl DeviceIdentity {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label) and spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "DeviceIdentity",
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

    fn spec(roles: &[&str]) -> DeviceIdentitySpec {
        DeviceIdentitySpec {
            description: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            view: vec![DeviceView::SecurityGroups],
        }
    }

    fn errors(spec: &DeviceIdentitySpec) -> Vec<String> {
        match spec.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.errors().iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn a_reader_device_passes() {
        assert!(errors(&spec(&["reader"])).is_empty());
        assert!(spec(&["reader"]).may_view(DeviceView::SecurityGroups));
    }

    #[test]
    fn admin_is_refused_at_the_roles_path() {
        let e = errors(&spec(&["reader", "ADMIN"]));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.roles:") && e[0].contains("admin"),
            "{e:?}"
        );
    }

    #[test]
    fn role_count_and_shape_are_bounded_by_path() {
        assert!(
            errors(&spec(&[]))
                .iter()
                .any(|m| m.starts_with("spec.roles:"))
        );
        assert!(
            errors(&spec(&["reader"; 5]))
                .iter()
                .any(|m| m.contains("at most 4"))
        );
        let e = errors(&spec(&["reader", "bad role"]));
        assert!(e.iter().any(|m| m.starts_with("spec.roles[1]:")), "{e:?}");
        let mut long = spec(&["reader"]);
        long.description = Some("x".repeat(256));
        assert!(
            errors(&long)
                .iter()
                .any(|m| m.starts_with("spec.description:"))
        );
    }
}
