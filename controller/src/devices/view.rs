//! The device view: a read-only HTTP endpoint where a device reads what its DeviceIdentity lets
//! it see, authenticated by a Keystone token of its own credential.
//!
//! `GET /v1/security-groups` with `X-Auth-Token: <token>` answers, as JSON, the security groups
//! (rules and member addresses as the controller compiled them) of the device's namespace:
//!
//! - 401: no token, or Keystone does not accept it (unknown, expired, revoked);
//! - 403: a valid token that is not a device's: its user is not the `yun-device-*` user of an
//!   issued DeviceIdentity listing `SecurityGroups` in `view`, or it is scoped to another
//!   project or made with another credential;
//! - 503: no Keystone configured, Keystone unreachable, or this controller has not run a pass
//!   (a standby);
//! - 405 for any method but GET (and HEAD).
//!
//! Validation goes through a [`TokenCache`]; a token the cache says is not a device's is
//! validated again with Keystone before the answer, so a device revoked since its token was
//! cached gets 401, not a stale answer. The token is never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use yun_crds::DeviceView;
use yun_identity::{IdentityError, TokenCache, TokenInfo};

use super::{DeviceDirectory, DeviceEntry, Directory, GroupView};
use crate::identity::Identity;
use crate::identity::device::{DEVICE_USER_PREFIX, DeviceIdentityError};

/// The header a device presents its token in (as OpenStack services take it).
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";
pub const SECURITY_GROUPS_PATH: &str = "/v1/security-groups";

/// Why the view could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("device view: binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ViewState {
    pub identity: Identity,
    pub cache: Arc<TokenCache>,
    pub directory: DeviceDirectory,
}

/// The answer to `GET /v1/security-groups`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupsView<'a> {
    pub namespace: &'a str,
    pub device: &'a str,
    pub security_groups: &'a [GroupView],
}

pub fn router(state: ViewState) -> Router {
    Router::new()
        .route(SECURITY_GROUPS_PATH, get(security_groups))
        .with_state(state)
}

/// Binds `addr` and serves the view in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: ViewState) -> Result<SocketAddr, ViewError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ViewError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ViewError::Bind { addr, source })?;
    let app = router(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "device view server stopped");
        }
    });
    tracing::info!(listen = %bound, "device view serving {SECURITY_GROUPS_PATH}");
    Ok(bound)
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// Why a valid token does not get the view.
fn authorize<'a>(
    directory: &'a Directory,
    info: &TokenInfo,
    view: DeviceView,
) -> Result<&'a DeviceEntry, &'static str> {
    if !info.user_name.starts_with(DEVICE_USER_PREFIX) {
        return Err("not a device's token");
    }
    let device = directory
        .devices
        .get(&info.user_id)
        .ok_or("no issued DeviceIdentity has this user")?;
    if info.project_id.as_deref() != Some(device.project_id.as_str()) {
        return Err("token not scoped to the device's project");
    }
    if info.application_credential_id.as_deref() != Some(device.credential_id.as_str()) {
        return Err("token not made with the device's credential");
    }
    if !device.views.contains(&view) {
        return Err("the DeviceIdentity does not list this view");
    }
    Ok(device)
}

/// A token validation that failed, as an answer.
fn refused(err: &DeviceIdentityError) -> Response {
    match err {
        DeviceIdentityError::Keystone(IdentityError::TokenInvalid { .. }) => {
            plain(StatusCode::UNAUTHORIZED, "token not accepted\n")
        }
        DeviceIdentityError::Disabled => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the controller has no Keystone configured\n",
        ),
        other => {
            tracing::warn!(error = %other, "device view: cannot validate a token");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot validate the token now\n",
            )
        }
    }
}

async fn security_groups(State(state): State<ViewState>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(AUTH_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    else {
        return plain(StatusCode::UNAUTHORIZED, "X-Auth-Token required\n");
    };
    let directory = state.directory.snapshot();
    if !directory.ready {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "this controller has not reconciled devices (yet)\n",
        );
    }
    let view = DeviceView::SecurityGroups;
    let info = match state
        .identity
        .validate_token(&state.cache, token, false)
        .await
    {
        Ok(info) => info,
        Err(e) => return refused(&e),
    };
    let device = match authorize(&directory, &info, view) {
        Ok(device) => device,
        Err(_) => {
            // The cached validation may predate a revocation: ask Keystone before refusing.
            let info = match state
                .identity
                .validate_token(&state.cache, token, true)
                .await
            {
                Ok(info) => info,
                Err(e) => return refused(&e),
            };
            match authorize(&directory, &info, view) {
                Ok(device) => device,
                Err(why) => {
                    tracing::info!(user = %info.user_id, why, "device view refused");
                    return plain(StatusCode::FORBIDDEN, "not a device allowed this view\n");
                }
            }
        }
    };
    let groups = directory
        .security_groups
        .get(&device.namespace)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let body = SecurityGroupsView {
        namespace: &device.namespace,
        device: &device.name,
        security_groups: groups,
    };
    match serde_json::to_vec(&body) {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the view\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user_name: &str, project: &str, credential: &str) -> TokenInfo {
        TokenInfo {
            user_id: "u1".into(),
            user_name: user_name.into(),
            project_id: Some(project.into()),
            roles: vec!["reader".into()],
            expires_at: jiff::Timestamp::now(),
            application_credential_id: Some(credential.into()),
        }
    }

    fn directory(views: Vec<DeviceView>) -> Directory {
        let entry = DeviceEntry {
            namespace: "team-a".into(),
            name: "ids".into(),
            user_id: "u1".into(),
            project_id: "p1".into(),
            credential_id: "c1".into(),
            views,
        };
        Directory {
            ready: true,
            devices: [("u1".to_owned(), entry)].into(),
            security_groups: Default::default(),
        }
    }

    #[test]
    fn only_the_device_its_project_and_credential_with_the_view_pass() {
        let sg = DeviceView::SecurityGroups;
        let dir = directory(vec![sg]);
        assert!(authorize(&dir, &info("yun-device-x", "p1", "c1"), sg).is_ok());
        for wrong in [
            info("admin", "p1", "c1"),
            info("yun-device-x", "p2", "c1"),
            info("yun-device-x", "p1", "c2"),
        ] {
            assert!(authorize(&dir, &wrong, sg).is_err(), "{wrong:?}");
        }
        let no_view = directory(vec![]);
        assert!(authorize(&no_view, &info("yun-device-x", "p1", "c1"), sg).is_err());
    }
}
