//! etcd users and roles of the fleet bus (provisioned with the root user's certificate).
//!
//! etcd takes a client's user from its certificate's CN. Principals:
//!
//! | user (= CN, = role)  | may read                    | may write                              |
//! |----------------------|-----------------------------|----------------------------------------|
//! | `root`               | everything (etcd's root)    | everything, users, roles, auth         |
//! | `yun-controller`     | `/yun/v1/`                  | `/yun/v1/`                             |
//! | `host:<host>`        | `/yun/v1/hosts/<host>/`     | its `info`, `images`, `report/`        |
//! | `yunctl` (a client)  | `/yun/store/v1/`            | `/yun/store/v1/` (objects, Events)     |
//!
//! The controller also reads and writes `/yun/store/v1/`, the bootstrap object store.
//!
//! A host's grants are built from the `yun_fleet::keys` functions, so the role follows the key
//! schema. Host names are DNS labels (no `:`), so `host:<host>` never names another principal.
//! Every `ensure_*` function makes the user and its role exactly what is listed here (extra
//! permissions and roles are revoked) and may be run any number of times.

use crate::bus::FleetBus;
use crate::scan::prefix_end;
use etcd_client::{
    Client, Permission, PermissionType, RoleRevokePermissionOptions, UserAddOptions,
};
use std::collections::BTreeMap;
use thiserror::Error;
use yun_fleet::{KeyError, keys};

/// etcd's superuser: provisions users and roles, and nothing else.
pub const ROOT_USER: &str = "root";
/// The controller's user (and the CN of its certificate) unless told otherwise.
pub const CONTROLLER_USER: &str = "yun-controller";
const HOST_USER_PREFIX: &str = "host:";

#[derive(Debug, Error)]
pub enum RoleError {
    #[error(
        "etcd refused {op} {name}: permission denied (provisioning needs the certificate of etcd's root user)"
    )]
    PermissionDenied { op: &'static str, name: String },
    #[error("etcd {op} {name} failed: {source}")]
    Etcd {
        op: &'static str,
        name: String,
        source: etcd_client::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("user name {name:?} is reserved for {reserved_for}")]
    Reserved {
        name: String,
        reserved_for: &'static str,
    },
}

fn etcd_err(op: &'static str, name: &str) -> impl FnOnce(etcd_client::Error) -> RoleError {
    let name = name.to_owned();
    move |source| match &source {
        etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::PermissionDenied => {
            RoleError::PermissionDenied { op, name }
        }
        _ => RoleError::Etcd { op, name, source },
    }
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    ReadWrite,
}

impl Access {
    fn etcd_type(self) -> PermissionType {
        match self {
            Access::Read => PermissionType::Read,
            Access::ReadWrite => PermissionType::Readwrite,
        }
    }
}

/// One permission of a role: one key, or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyGrant {
    pub access: Access,
    pub key: String,
    pub prefix: bool,
}

impl KeyGrant {
    fn key(access: Access, key: String) -> KeyGrant {
        KeyGrant {
            access,
            key,
            prefix: false,
        }
    }

    fn prefix(access: Access, key: String) -> KeyGrant {
        KeyGrant {
            access,
            key,
            prefix: true,
        }
    }

    /// etcd's range end: empty for a single key.
    fn range_end(&self) -> Vec<u8> {
        if self.prefix {
            prefix_end(&self.key)
        } else {
            Vec::new()
        }
    }
}

/// The etcd user (and role) of a host's agent: `host:<host>`.
pub fn host_user(host: &str) -> Result<String, RoleError> {
    keys::host_prefix(host)?;
    Ok(format!("{HOST_USER_PREFIX}{host}"))
}

/// What a host's agent may do: read its own prefix; write its info, images and reports.
pub fn host_grants(host: &str) -> Result<Vec<KeyGrant>, RoleError> {
    Ok(vec![
        KeyGrant::prefix(Access::Read, keys::host_prefix(host)?),
        KeyGrant::key(Access::ReadWrite, keys::host_info(host)?),
        KeyGrant::key(Access::ReadWrite, keys::host_images(host)?),
        KeyGrant::prefix(Access::ReadWrite, keys::host_report_prefix(host)?),
    ])
}

/// What the controller may do: everything under `/yun/v1/` (election key included) and the
/// object store.
pub fn controller_grants() -> Vec<KeyGrant> {
    vec![
        KeyGrant::prefix(Access::ReadWrite, keys::ROOT.to_owned()),
        KeyGrant::prefix(Access::ReadWrite, keys::STORE_PREFIX.to_owned()),
    ]
}

/// The etcd user of `yunctl` unless told otherwise.
pub const STORE_CLIENT_USER: &str = "yunctl";

/// What a store client (`yunctl`) may do: read and write the object store, nothing of the fleet.
pub fn store_client_grants() -> Vec<KeyGrant> {
    vec![KeyGrant::prefix(
        Access::ReadWrite,
        keys::STORE_PREFIX.to_owned(),
    )]
}

/// Creates the root user (no password: it authenticates by certificate) if missing and enables
/// authentication. Run with a certificate whose CN is `root`: once auth is on, only root may
/// provision.
pub async fn ensure_root_and_enable_auth(bus: &FleetBus) -> Result<(), RoleError> {
    let mut client = bus.client();
    ensure_user(&mut client, ROOT_USER, ROOT_USER).await?;
    client
        .auth_enable()
        .await
        .map_err(etcd_err("auth enable for", ROOT_USER))?;
    Ok(())
}

/// A user other than root's or a host's must not take their names.
fn check_not_reserved(cn: &str) -> Result<(), RoleError> {
    if cn == ROOT_USER || cn.starts_with(HOST_USER_PREFIX) || cn.is_empty() {
        return Err(RoleError::Reserved {
            name: cn.to_owned(),
            reserved_for: "etcd's root and the hosts (host:<name>)",
        });
    }
    Ok(())
}

/// Creates or updates the controller's user `cn` and its role (same name).
pub async fn ensure_controller_user(bus: &FleetBus, cn: &str) -> Result<(), RoleError> {
    check_not_reserved(cn)?;
    let mut client = bus.client();
    ensure_role(&mut client, cn, &controller_grants()).await?;
    ensure_user(&mut client, cn, cn).await
}

/// Creates or updates a store client's user `cn` (`yunctl`'s certificate CN) and its role.
pub async fn ensure_store_client_user(bus: &FleetBus, cn: &str) -> Result<(), RoleError> {
    check_not_reserved(cn)?;
    let mut client = bus.client();
    ensure_role(&mut client, cn, &store_client_grants()).await?;
    ensure_user(&mut client, cn, cn).await
}

/// Creates or updates the user and role `host:<host>` of one host's agent.
pub async fn ensure_host_user(bus: &FleetBus, host: &str) -> Result<(), RoleError> {
    let user = host_user(host)?;
    let mut client = bus.client();
    ensure_role(&mut client, &user, &host_grants(host)?).await?;
    ensure_user(&mut client, &user, &user).await
}

/// Deletes a host's user and role (a decommissioned host; its certificate then names no
/// user and every request with it is refused). Absent user or role is fine.
pub async fn remove_host_user(bus: &FleetBus, host: &str) -> Result<(), RoleError> {
    let user = host_user(host)?;
    let mut client = bus.client();
    if list_users(&mut client).await?.contains(&user) {
        client
            .user_delete(user.as_str())
            .await
            .map_err(etcd_err("delete user", &user))?;
    }
    if list_roles(&mut client).await?.contains(&user) {
        client
            .role_delete(user.as_str())
            .await
            .map_err(etcd_err("delete role", &user))?;
    }
    Ok(())
}

async fn list_users(client: &mut Client) -> Result<Vec<String>, RoleError> {
    Ok(client
        .user_list()
        .await
        .map_err(etcd_err("list users", ""))?
        .users()
        .to_vec())
}

async fn list_roles(client: &mut Client) -> Result<Vec<String>, RoleError> {
    Ok(client
        .role_list()
        .await
        .map_err(etcd_err("list roles", ""))?
        .roles()
        .to_vec())
}

/// The user exists (without a password) and holds exactly `role`.
async fn ensure_user(client: &mut Client, user: &str, role: &str) -> Result<(), RoleError> {
    if !list_users(client).await?.iter().any(|u| u == user) {
        client
            .user_add(user, "", Some(UserAddOptions::new().with_no_pwd()))
            .await
            .map_err(etcd_err("add user", user))?;
    }
    let held = client
        .user_get(user)
        .await
        .map_err(etcd_err("get user", user))?
        .roles()
        .to_vec();
    for extra in held.iter().filter(|r| *r != role) {
        client
            .user_revoke_role(user, extra.as_str())
            .await
            .map_err(etcd_err("revoke role from", user))?;
    }
    if !held.iter().any(|r| r == role) {
        client
            .user_grant_role(user, role)
            .await
            .map_err(etcd_err("grant role to", user))?;
    }
    Ok(())
}

/// The role exists and grants exactly `grants`. etcd keeps one permission per key range (a
/// grant on the same range replaces its type), so ranges are compared with their types.
async fn ensure_role(
    client: &mut Client,
    role: &str,
    grants: &[KeyGrant],
) -> Result<(), RoleError> {
    if !list_roles(client).await?.iter().any(|r| r == role) {
        client
            .role_add(role)
            .await
            .map_err(etcd_err("add role", role))?;
    }
    let current: BTreeMap<(Vec<u8>, Vec<u8>), i32> = client
        .role_get(role)
        .await
        .map_err(etcd_err("get role", role))?
        .permissions()
        .iter()
        .map(|p| ((p.key().to_vec(), p.range_end().to_vec()), p.get_type()))
        .collect();
    let wanted: BTreeMap<(Vec<u8>, Vec<u8>), &KeyGrant> = grants
        .iter()
        .map(|g| ((g.key.as_bytes().to_vec(), g.range_end()), g))
        .collect();
    for (key, range_end) in current.keys().filter(|r| !wanted.contains_key(*r)) {
        let opts = (!range_end.is_empty())
            .then(|| RoleRevokePermissionOptions::new().with_range_end(range_end.clone()));
        client
            .role_revoke_permission(role, key.clone(), opts)
            .await
            .map_err(etcd_err("revoke permission from", role))?;
    }
    for (range, grant) in &wanted {
        let etcd_type = grant.access.etcd_type();
        if current.get(range) == Some(&i32::from(etcd_type)) {
            continue;
        }
        let mut perm = Permission::new(etcd_type, grant.key.as_str());
        if grant.prefix {
            perm = perm.with_range_end(grant.range_end());
        }
        client
            .role_grant_permission(role, perm)
            .await
            .map_err(etcd_err("grant permission to", role))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_grants_cover_its_prefix_read_only_and_its_reports_read_write() {
        let g = host_grants("a").unwrap();
        let read_write: Vec<_> = g.iter().filter(|g| g.access == Access::ReadWrite).collect();
        assert_eq!(
            g[0],
            KeyGrant::prefix(Access::Read, "/yun/v1/hosts/a/".into())
        );
        assert_eq!(
            read_write
                .iter()
                .map(|g| g.key.as_str())
                .collect::<Vec<_>>(),
            [
                "/yun/v1/hosts/a/info",
                "/yun/v1/hosts/a/images",
                "/yun/v1/hosts/a/report/"
            ]
        );
        let uid = "6f1c2a3b-0000-4000-8000-000000000001";
        let writable = |key: &str| {
            read_write
                .iter()
                .any(|g| key == g.key || (g.prefix && key.starts_with(&g.key)))
        };
        // Everything the agent writes is writable; the controller's records on its prefix are not.
        assert!(writable(&keys::vm_observed("a", uid).unwrap()));
        assert!(writable(&keys::vm_volume("a", uid, uid).unwrap()));
        assert!(!writable(&keys::vm_desired("a", uid).unwrap()));
        assert!(!writable(&keys::host_alloc("a").unwrap()));
        assert!(!writable(&keys::host_fw_groups("a").unwrap()));
        assert!(!writable(&keys::vm_observed("b", uid).unwrap()));
        // The prefix ends after the host's own names: `a` reads nothing of `ab`.
        assert_eq!(g[0].range_end(), b"/yun/v1/hosts/a0".to_vec());
        assert!(g[1].range_end().is_empty());
    }

    #[test]
    fn host_users_cannot_collide_with_other_principals() {
        assert_eq!(host_user("a").unwrap(), "host:a");
        assert!(host_user("Root").is_err());
        assert!(host_user("a:b").is_err());
        assert!(host_grants("../x").is_err());
        assert_eq!(
            controller_grants(),
            [
                KeyGrant::prefix(Access::ReadWrite, "/yun/v1/".into()),
                KeyGrant::prefix(Access::ReadWrite, "/yun/store/v1/".into()),
            ]
        );
        assert!(keys::ELECTION_CONTROLLER.starts_with(&controller_grants()[0].key));
    }

    #[test]
    fn a_store_client_reaches_the_store_and_no_fleet_key() {
        let grants = store_client_grants();
        assert_eq!(
            grants,
            [KeyGrant::prefix(Access::ReadWrite, "/yun/store/v1/".into())]
        );
        assert!(
            !keys::STORE_PREFIX.starts_with(keys::ROOT)
                && !keys::ROOT.starts_with(keys::STORE_PREFIX)
        );
    }
}
