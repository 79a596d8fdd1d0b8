//! How a device's credential reaches its operator: a private credentials file on the
//! controller's machine (bootstrap mode, [`super::file`]), or a Kubernetes Secret next to the
//! `DeviceIdentity` (Kubernetes mode), owned by it so that deleting the object also deletes
//! the Secret.
//!
//! The Secret `<name>-keystone` holds `credentials.toml` (the same text as the file, for tools
//! that read yun-identity's format) and the three values as separate keys (`auth_url`,
//! `application_credential_id`, `application_credential_secret`) for environment variables.
//! The controller writes it with server-side apply, and never takes over a Secret of that name
//! it does not own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};

use super::file::{self, DeviceFileError};
use crate::identity::device::DeviceCredential;

/// Field manager of the Secrets the controller writes.
const FIELD_MANAGER: &str = "yun-controller";
/// Label on every credential Secret: the DeviceIdentity's name.
pub const DEVICE_LABEL: &str = "yun.dev/device-identity";
pub const KEY_TOML: &str = "credentials.toml";
pub const KEY_AUTH_URL: &str = "auth_url";
pub const KEY_ID: &str = "application_credential_id";
pub const KEY_SECRET: &str = "application_credential_secret";

/// The Secret name of device `name`.
pub fn secret_name(name: &str) -> String {
    format!("{name}-keystone")
}

/// The device a credential is delivered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub namespace: String,
    pub name: String,
    /// The object's uid (Kubernetes) or its bootstrap record's.
    pub uid: String,
}

/// Why a credential could not be delivered or withdrawn, or it could not be told whether the
/// delivered one is current. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    File(#[from] DeviceFileError),
    #[error("Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "Secret {namespace}/{name} exists and is not this DeviceIdentity's (no owner reference to uid {uid}); rename or delete it"
    )]
    NotOwned {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// Where credentials go.
#[derive(Clone)]
pub enum Delivery {
    /// `<dir>/<namespace>/<name>.toml`, 0600.
    Files(PathBuf),
    /// A Secret per device in its namespace.
    Secrets(Client),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Files(dir) => write!(f, "Files({})", dir.display()),
            Delivery::Secrets(_) => f.write_str("Secrets"),
        }
    }
}

impl Delivery {
    /// Where `device`'s credential is, for people.
    pub fn describe(&self, device: &DeviceRef) -> String {
        match self {
            Delivery::Files(dir) => format!(
                "credentials file {}",
                file::credentials_path(dir, &device.namespace, &device.name).display()
            ),
            Delivery::Secrets(_) => {
                format!("Secret {}/{}", device.namespace, secret_name(&device.name))
            }
        }
    }

    /// Whether what was delivered to `device` is credential `credential_id`. An error means the
    /// controller cannot tell (the API server is unreachable), and nothing should be replaced.
    pub async fn holds(
        &self,
        device: &DeviceRef,
        credential_id: &str,
    ) -> Result<bool, DeliveryError> {
        match self {
            Delivery::Files(dir) => Ok(file::holds(
                &file::credentials_path(dir, &device.namespace, &device.name),
                credential_id,
            )),
            Delivery::Secrets(client) => {
                let Some(secret) = self.read(client, device).await? else {
                    return Ok(false);
                };
                owned_by(&secret, device)?;
                let id = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY_ID))
                    .map(|v| v.0.as_slice());
                Ok(id == Some(credential_id.as_bytes()))
            }
        }
    }

    /// Delivers `credential` to `device`, replacing what was there.
    pub async fn write(
        &self,
        device: &DeviceRef,
        credential: &DeviceCredential,
    ) -> Result<(), DeliveryError> {
        match self {
            Delivery::Files(dir) => {
                file::write(dir, &device.namespace, &device.name, credential)?;
                Ok(())
            }
            Delivery::Secrets(client) => {
                if let Some(existing) = self.read(client, device).await? {
                    owned_by(&existing, device)?;
                }
                let name = secret_name(&device.name);
                let body = secret_body(device, credential);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                Api::<Secret>::namespaced(client.clone(), &device.namespace)
                    .patch(&name, &params, &Patch::Apply(&body))
                    .await
                    .map_err(|e| api_error(device, e))?;
                Ok(())
            }
        }
    }

    /// Withdraws `device`'s credential; one that is not there is fine.
    pub async fn remove(&self, device: &DeviceRef) -> Result<(), DeliveryError> {
        match self {
            Delivery::Files(dir) => Ok(file::remove(dir, &device.namespace, &device.name)?),
            Delivery::Secrets(client) => {
                let Some(existing) = self.read(client, device).await? else {
                    return Ok(());
                };
                if owned_by(&existing, device).is_err() {
                    // Someone else's Secret of that name: not ours to delete.
                    return Ok(());
                }
                match Api::<Secret>::namespaced(client.clone(), &device.namespace)
                    .delete(&secret_name(&device.name), &DeleteParams::default())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(api_error(device, e)),
                }
            }
        }
    }

    async fn read(
        &self,
        client: &Client,
        device: &DeviceRef,
    ) -> Result<Option<Secret>, DeliveryError> {
        Api::<Secret>::namespaced(client.clone(), &device.namespace)
            .get_opt(&secret_name(&device.name))
            .await
            .map_err(|e| api_error(device, e))
    }

    /// The credentials directory of bootstrap mode, `None` in Kubernetes mode.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Delivery::Files(dir) => Some(dir),
            Delivery::Secrets(_) => None,
        }
    }
}

fn api_error(device: &DeviceRef, source: kube::Error) -> DeliveryError {
    DeliveryError::Api {
        namespace: device.namespace.clone(),
        name: secret_name(&device.name),
        source: Box::new(source),
    }
}

/// Whether `secret` carries an owner reference to `device` (by uid).
fn owned_by(secret: &Secret, device: &DeviceRef) -> Result<(), DeliveryError> {
    let owned = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == device.uid && o.kind == "DeviceIdentity");
    if owned {
        Ok(())
    } else {
        Err(DeliveryError::NotOwned {
            namespace: device.namespace.clone(),
            name: secret_name(&device.name),
            uid: device.uid.clone(),
        })
    }
}

/// The applied Secret: owned by the DeviceIdentity (deleted with it), labelled with its name.
/// `data`, not `stringData`: server-side apply tracks ownership of the fields as stored.
pub fn secret_body(device: &DeviceRef, credential: &DeviceCredential) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        (KEY_TOML, file::render(credential)),
        (KEY_AUTH_URL, credential.auth_url.clone()),
        (KEY_ID, credential.credential_id.clone()),
        (KEY_SECRET, credential.secret.expose().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let labels = [
        (DEVICE_LABEL.to_owned(), device.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ];
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&device.name)),
            namespace: Some(device.namespace.clone()),
            labels: Some(labels.into_iter().collect()),
            owner_references: Some(vec![OwnerReference {
                api_version: "yun.dev/v1alpha1".into(),
                kind: "DeviceIdentity".into(),
                name: device.name.clone(),
                uid: device.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}
