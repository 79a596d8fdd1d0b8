//! The controller's ClusterRole (`deploy/rbac.yaml`), enforced on the scripted API server: each
//! request is mapped to (API group, resource, subresource, verb) the way the API server's
//! request-info resolver does, and checked against the role's rules as the RBAC authorizer
//! checks them. A request the role does not allow is what a real cluster would answer 403.

use http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

/// The ServiceAccount the controller runs as (`deploy/rbac.yaml`).
pub const USER: &str = "system:serviceaccount:yun-system:yun-controller";
/// The ClusterRole the tests enforce.
pub const ROLE: &str = "yun-controller";

/// `deploy/rbac.yaml`, relative to this crate.
pub fn rbac_yaml_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml")
}

/// One rule of a ClusterRole.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// A document of `deploy/rbac.yaml`: only the fields the check reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    rules: Vec<PolicyRule>,
    #[serde(default)]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Vec<Subject>,
}

/// The rules of ClusterRole [`ROLE`] in `yaml` (multi-document), provided a ClusterRoleBinding
/// grants it to the ServiceAccount [`USER`].
pub fn cluster_role_rules(yaml: &str) -> Result<Vec<PolicyRule>, String> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(yaml) {
        docs.push(Document::deserialize(de).map_err(|e| e.to_string())?);
    }
    let bound = docs.iter().any(|d| {
        d.kind == "ClusterRoleBinding"
            && d.role_ref
                .as_ref()
                .is_some_and(|r| r.kind == "ClusterRole" && r.name == ROLE)
            && d.subjects.iter().any(|s| {
                s.kind == "ServiceAccount"
                    && s.namespace.as_deref() == Some("yun-system")
                    && s.name == "yun-controller"
            })
    });
    if !bound {
        return Err(format!(
            "no ClusterRoleBinding grants ClusterRole {ROLE} to {USER}"
        ));
    }
    let role = docs
        .into_iter()
        .find(|d| d.kind == "ClusterRole" && d.metadata.name == ROLE)
        .ok_or_else(|| format!("no ClusterRole {ROLE}"))?;
    Ok(role.rules)
}

/// The rules of `deploy/rbac.yaml`, read once per test binary.
pub fn deployed_rules() -> &'static [PolicyRule] {
    static RULES: LazyLock<Vec<PolicyRule>> = LazyLock::new(|| {
        let path = rbac_yaml_path();
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        cluster_role_rules(&yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    });
    &RULES
}

/// What the authorizer sees of a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// A request the role does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub attributes: Option<Box<Attributes>>,
    pub message: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Subresources of a namespace itself (`/api/v1/namespaces/{ns}/status`), not resources in it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Maps a request to its authorizer attributes as the API server does (`RequestInfoFactory`).
/// `None` for a path that is not a resource request (`/version`, discovery of `/apis`).
pub fn attributes(
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
) -> Option<Attributes> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let mut rest = rest.to_vec();
    let mut legacy_watch = false;
    if rest.first() == Some(&"watch") {
        legacy_watch = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_owned());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        }
    }
    let resource = (*rest.first()?).to_owned();
    if resource.is_empty() {
        return None;
    }
    let name = rest.get(1).map(|n| (*n).to_owned());
    let subresource = rest.get(2).map(|s| (*s).to_owned());
    // A namespace object's own path: it is not "in" itself.
    if resource == "namespaces" {
        namespace = None;
    }
    let watch_param = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match *method {
        Method::GET | Method::HEAD if legacy_watch || watch_param => "watch",
        Method::GET | Method::HEAD if name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    };
    Some(Attributes {
        verb: verb.to_owned(),
        group: group.to_owned(),
        resource,
        subresource,
        namespace,
        name,
    })
}

fn matches(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether one rule allows `a` (RBAC's `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let resource = a.rbac_resource();
    let resource_ok = rule.resources.iter().any(|r| {
        r == "*"
            || *r == resource
            // `*/status` names a subresource of every resource.
            || (a.subresource.as_deref().is_some_and(|s| *r == format!("*/{s}")))
    });
    let name_ok = rule.resource_names.is_empty()
        || a.name
            .as_deref()
            .is_some_and(|n| rule.resource_names.iter().any(|r| r == n));
    matches(&rule.verbs, &a.verb) && matches(&rule.api_groups, &a.group) && resource_ok && name_ok
}

/// The API server's Forbidden message for `a`.
pub fn forbidden_message(a: &Attributes) -> String {
    let what = match &a.name {
        Some(name) if a.group.is_empty() => format!("{} {name:?}", a.resource),
        Some(name) => format!("{}.{} {name:?}", a.resource, a.group),
        None if a.group.is_empty() => a.resource.clone(),
        None => format!("{}.{}", a.resource, a.group),
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_owned(),
    };
    format!(
        "{what} is forbidden: User {USER:?} cannot {} resource {:?} in API group {:?} {scope} \
         (ClusterRole {ROLE} in deploy/rbac.yaml)",
        a.verb,
        a.rbac_resource(),
        a.group,
    )
}

/// Checks a request against `rules`.
pub fn authorize_with(
    rules: &[PolicyRule],
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
) -> Result<(), Denied> {
    let Some(a) = attributes(method, path, query) else {
        return Err(Denied {
            attributes: None,
            message: format!(
                "{method} {path} is forbidden: not a resource request the ClusterRole {ROLE} \
                 could allow (non-resource URLs are not granted)"
            ),
        });
    };
    if rules.iter().any(|r| rule_allows(r, &a)) {
        Ok(())
    } else {
        Err(Denied {
            message: forbidden_message(&a),
            attributes: Some(Box::new(a)),
        })
    }
}

/// Checks a request against the ClusterRole in `deploy/rbac.yaml`.
pub fn authorize(
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
) -> Result<(), Denied> {
    authorize_with(deployed_rules(), method, path, query)
}

/// A server-side apply (`application/apply-patch+yaml`) of an object that does not exist yet
/// creates it, and the API server then also requires `create`. The mock cannot know whether the
/// object exists, so an apply of an object (not a subresource: a status apply of a missing
/// object is a 404) must be allowed to create it too.
pub fn authorize_apply_create(
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: &str,
) -> Result<(), Denied> {
    if *method != Method::PATCH || !content_type.starts_with("application/apply-patch") {
        return Ok(());
    }
    let Some(mut a) = attributes(method, path, query) else {
        return Ok(());
    };
    if a.subresource.is_some() {
        return Ok(());
    }
    a.verb = "create".to_owned();
    if deployed_rules().iter().any(|r| rule_allows(r, &a)) {
        Ok(())
    } else {
        Err(Denied {
            message: format!(
                "{} (a server-side apply that creates the object needs create as well as patch)",
                forbidden_message(&a)
            ),
            attributes: Some(Box::new(a)),
        })
    }
}
