//! `yun-controller run` flags for DeviceIdentity: where credentials files go, where the
//! read-only device view listens, and which roles devices may hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use yun_controller::devices::view::{ViewState, serve};
use yun_controller::devices::{
    DEFAULT_DEVICE_ROLES, DEFAULT_DEVICES_DIR, DEFAULT_VIEW_LISTEN, DeviceConfig, Devices,
};
use yun_controller::identity::Identity;
use yun_identity::TokenCache;

use crate::keystone_args::parse_period;

#[derive(Debug, ClapArgs)]
pub struct DeviceArgs {
    /// Where DeviceIdentity credentials files are written: `<dir>/<namespace>/<name>.toml`,
    /// mode 0600 in 0700 directories (bootstrap mode).
    #[arg(long, env = "YUN_DEVICES_DIR", default_value = DEFAULT_DEVICES_DIR)]
    pub devices_dir: PathBuf,
    /// Where devices read their view (`GET /v1/security-groups`, Keystone token in
    /// X-Auth-Token); served only with --keystone-credentials.
    #[arg(long, default_value = DEFAULT_VIEW_LISTEN)]
    pub device_view_listen: SocketAddr,
    /// Roles devices may ask for (comma-separated); `admin` is never allowed.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_DEVICE_ROLES.iter().map(|r| r.to_string()))]
    pub device_identity_roles: Vec<String>,
    /// Age at which a device credential is rotated (30d, 12h, 90m, 45s), or `never`.
    #[arg(long, default_value = "30d", value_parser = parse_rotation)]
    pub device_identity_rotation: Rotation,
    /// How long a rotated-out device credential stays valid, for the device to switch to the
    /// new one (re-read its credentials file or Secret).
    #[arg(long, default_value = "1h", value_parser = parse_period)]
    pub device_rotation_overlap: Duration,
}

/// A rotation period, or none.
#[derive(Debug, Clone, Copy)]
pub struct Rotation(pub Option<Duration>);

fn parse_rotation(text: &str) -> Result<Rotation, String> {
    match text {
        "never" => Ok(Rotation(None)),
        _ => parse_period(text).map(|d| Rotation(Some(d))),
    }
}

impl DeviceArgs {
    /// Starts the device view (only with Keystone: without it no token can be checked, and no
    /// device issued) and returns what the bootstrap source issues devices with.
    pub async fn start(&self, identity: &Identity) -> anyhow::Result<Devices> {
        if let Some(bad) = self
            .device_identity_roles
            .iter()
            .find(|r| r.eq_ignore_ascii_case("admin"))
        {
            bail!("--device-identity-roles: {bad:?} may never be given to a device");
        }
        let devices = Devices::new(DeviceConfig {
            dir: self.devices_dir.clone(),
            allowed_roles: self.device_identity_roles.clone(),
            rotation: self.device_identity_rotation.0,
            rotation_overlap: self.device_rotation_overlap,
        });
        if !identity.is_enabled() {
            tracing::info!("no --keystone-credentials: the device view is not served");
            return Ok(devices);
        }
        let state = ViewState {
            identity: identity.clone(),
            cache: Arc::new(TokenCache::default()),
            directory: devices.directory.clone(),
        };
        serve(self.device_view_listen, state)
            .await
            .context("starting the device view (--device-view-listen)")?;
        Ok(devices)
    }
}
