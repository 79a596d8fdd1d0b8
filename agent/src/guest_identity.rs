//! A VM's Keystone identity as its guest receives it: an OpenStack `clouds.yaml` with one cloud,
//! `yun`, holding the application credential, written by cloud-init from the seed's
//! vendor-data. Pure rendering; the seed ISO ([`crate::seed`]) carries the result.
//!
//! Two ways into the guest, each surviving what defeats the other:
//! - `write_files` (cloud-init's per-instance module) writes the file at first boot;
//! - a `bootcmd` (run at every boot) copies the seed's own [`SEED_CLOUDS_FILE`] over it, so a
//!   rotated credential reaches the guest at its next cold boot, when cloud-init itself would
//!   not write files again for the same instance. cloud-init drops a vendor-data key that the
//!   user-data also sets (its default merge), so user-data with its own `write_files` still
//!   gets the file from the `bootcmd`, and the reverse.

use serde::Serialize;
use std::collections::BTreeMap;
use yun_fleet::GuestCredential;
use zeroize::Zeroizing;

/// The cloud's name in `clouds.yaml`: `openstack --os-cloud yun ...` in the guest.
pub const CLOUD_NAME: &str = "yun";
/// Where the guest gets its `clouds.yaml` (mode 0600, root): the first place the OpenStack
/// client and SDK look for system-wide clouds.
pub const GUEST_CLOUDS_YAML: &str = "/etc/openstack/clouds.yaml";
/// The seed file holding the current `clouds.yaml`, which the boot-time refresh copies.
pub const SEED_CLOUDS_FILE: &str = "yun-clouds.yaml";

/// Run by cloud-init's `bootcmd` at every boot (as root, `sh`): copies the seed's current
/// `clouds.yaml` into place through a temporary file in the same directory, so the guest never
/// sees half a file. It never fails the boot: a guest without the seed keeps what it has.
pub const REFRESH_SCRIPT: &str = r#"# yun: refresh /etc/openstack/clouds.yaml from the seed (a rotated credential arrives at the next cold boot)
yun_seed=$(blkid -c /dev/null -l -o device -t LABEL=cidata 2>/dev/null || blkid -c /dev/null -l -o device -t LABEL=CIDATA 2>/dev/null)
if [ -n "$yun_seed" ] && yun_mnt=$(mktemp -d); then
  if mount -o ro "$yun_seed" "$yun_mnt" 2>/dev/null; then
    if [ -f "$yun_mnt/yun-clouds.yaml" ]; then
      (umask 077 && mkdir -p /etc/openstack && cp "$yun_mnt/yun-clouds.yaml" /etc/openstack/.clouds.yaml.yun && mv -f /etc/openstack/.clouds.yaml.yun /etc/openstack/clouds.yaml)
    fi
    umount "$yun_mnt"
  fi
  rmdir "$yun_mnt"
fi
true
"#;

/// The identity files of one VM's seed. `Debug` never shows them: they hold the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentitySeed {
    /// The identity generation these files carry.
    pub generation: u64,
    /// NoCloud `vendor-data` (`#cloud-config`).
    pub vendor_data: Zeroizing<String>,
    /// The guest's `clouds.yaml`, also stored as [`SEED_CLOUDS_FILE`].
    pub clouds_yaml: Zeroizing<String>,
}

impl std::fmt::Debug for IdentitySeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySeed")
            .field("generation", &self.generation)
            .field("vendor_data", &"<redacted>")
            .field("clouds_yaml", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rendering the guest's clouds.yaml: {0}")]
pub struct RenderError(String);

#[derive(Serialize)]
struct CloudsFile<'a> {
    clouds: BTreeMap<&'static str, Cloud<'a>>,
}

#[derive(Serialize)]
struct Cloud<'a> {
    auth_type: &'static str,
    auth: Auth<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region_name: Option<&'a str>,
    identity_api_version: u8,
}

#[derive(Serialize)]
struct Auth<'a> {
    auth_url: &'a str,
    application_credential_id: &'a str,
    application_credential_secret: &'a str,
}

#[derive(Serialize)]
struct VendorData<'a> {
    write_files: [WriteFile<'a>; 1],
    bootcmd: [&'static str; 1],
}

#[derive(Serialize)]
struct WriteFile<'a> {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    content: &'a str,
}

fn yaml(value: &impl Serialize) -> Result<Zeroizing<String>, RenderError> {
    // serde_yaml quotes whatever would otherwise read as another type or as YAML structure.
    serde_yaml::to_string(value)
        .map(Zeroizing::new)
        .map_err(|e| RenderError(e.to_string()))
}

/// The guest's `clouds.yaml`: one cloud, [`CLOUD_NAME`], authenticating with the application
/// credential.
pub fn render_clouds_yaml(cred: &GuestCredential) -> Result<Zeroizing<String>, RenderError> {
    let cloud = Cloud {
        auth_type: "v3applicationcredential",
        auth: Auth {
            auth_url: &cred.auth_url,
            application_credential_id: &cred.application_credential_id,
            application_credential_secret: &cred.application_credential_secret,
        },
        region_name: cred.region.as_deref(),
        identity_api_version: 3,
    };
    yaml(&CloudsFile {
        clouds: BTreeMap::from([(CLOUD_NAME, cloud)]),
    })
}

/// The seed's identity files for `cred` at `generation`.
pub fn render(cred: &GuestCredential, generation: u64) -> Result<IdentitySeed, RenderError> {
    let clouds_yaml = render_clouds_yaml(cred)?;
    let body = yaml(&VendorData {
        write_files: [WriteFile {
            path: GUEST_CLOUDS_YAML,
            owner: "root:root",
            permissions: "0600",
            content: &clouds_yaml,
        }],
        bootcmd: [REFRESH_SCRIPT],
    })?;
    let mut vendor_data = Zeroizing::new(String::with_capacity(body.len() + 16));
    vendor_data.push_str("#cloud-config\n");
    vendor_data.push_str(&body);
    Ok(IdentitySeed {
        generation,
        vendor_data,
        clouds_yaml,
    })
}

#[cfg(test)]
#[path = "guest_identity_tests.rs"]
mod tests;
