//! A VM's Keystone identity on the fleet bus. The credential's secret never appears in clear:
//! the controller seals it to the target host's public key (`HostInfo.seal_key`), bound to the
//! host, the VM and the generation, and only that host's agent can open it.

use serde::{Deserialize, Serialize};

/// `VmDesired.identity`: the current application credential of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmIdentityRecord {
    /// Bumped at every rotation; the agent echoes the generation it delivered in
    /// `VmObserved.identity_generation`.
    pub generation: u64,
    /// Keystone application credential id (not secret: useless without the secret).
    pub credential_id: String,
    /// Keystone project the credential is scoped to.
    pub project_id: String,
    /// RFC 3339 time the credential was created (rotation and compliance age).
    pub issued_at: String,
    /// Role names the credential carries (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The previous generation, still valid until the agent reports this one delivered; the
    /// controller then revokes it and clears this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<u64>,
    /// The [`GuestCredential`] as JSON, sealed to the host.
    pub sealed: SealedBox,
}

/// What the guest receives (the plaintext inside [`VmIdentityRecord::sealed`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestCredential {
    /// Keystone v3 endpoint, e.g. `http://keystone.example:5000/v3`.
    pub auth_url: String,
    pub application_credential_id: String,
    pub application_credential_secret: String,
    pub project_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl std::fmt::Debug for GuestCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestCredential")
            .field("auth_url", &self.auth_url)
            .field("application_credential_id", &self.application_credential_id)
            .field("application_credential_secret", &"<redacted>")
            .field("project_id", &self.project_id)
            .finish()
    }
}

/// A message sealed to one host's X25519 key (see `crate::sealed`). All fields base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// Algorithm name, so a reader refuses what it cannot open instead of misreading it.
    pub alg: String,
    /// The sender's ephemeral public key.
    pub enc: String,
    /// AEAD ciphertext with its tag.
    pub ciphertext: String,
}

/// The associated data a VM credential is sealed with: a box copied to another host's record,
/// another VM or an older generation does not open.
pub fn identity_aad(host: &str, vm_uid: &str, generation: u64) -> Vec<u8> {
    format!("yun-vm-identity/v1/{host}/{vm_uid}/{generation}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = GuestCredential {
            auth_url: "http://k:5000/v3".into(),
            application_credential_id: "id1".into(),
            application_credential_secret: "s3cr3t-value".into(),
            project_id: "p1".into(),
            region: None,
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("id1") && !shown.contains("s3cr3t-value"),
            "{shown}"
        );
    }

    #[test]
    fn aad_binds_host_vm_and_generation() {
        let a = identity_aad("h1", "u1", 1);
        assert_ne!(a, identity_aad("h2", "u1", 1));
        assert_ne!(a, identity_aad("h1", "u2", 1));
        assert_ne!(a, identity_aad("h1", "u1", 2));
    }
}
