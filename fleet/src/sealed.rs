//! Sealed boxes: a message encrypted to one host's X25519 key, so that only that host's agent can
//! read it, whatever stores or copies the box on the way (etcd, backups, the controller's logs).
//!
//! The construction is RFC 9180 HPKE in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
//! and ChaCha20-Poly1305 (the `hpke` crate, pure Rust): a fresh ephemeral key per box, its
//! public half in [`SealedBox::enc`], the AEAD ciphertext and tag in [`SealedBox::ciphertext`].
//! The associated data is not stored in the box: the reader recomputes it from what it expects
//! (for a VM credential, [`identity_aad`]: host, VM uid, generation), so a box moved to another
//! host's record, another VM or another generation fails authentication instead of opening.
//!
//! No I/O here but the OS random source, which draws the key pairs and ephemeral keys.

use crate::identity::{GuestCredential, SealedBox, identity_aad};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hpke::rand_core::{CryptoRng, UnwrapErr};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, Zeroizing};

/// [`SealedBox::alg`] of every box this module makes; any other value is refused.
pub const SEAL_ALG: &str = "hpke-x25519-hkdf-sha256-chacha20poly1305";

/// HPKE `info` (domain separation): a box made with the same suite for another purpose, with
/// another `info`, does not open here.
const INFO: &[u8] = b"yun-sealed-box/v1";

/// Bytes of an X25519 public key, secret key and encapsulated key.
pub const KEY_LEN: usize = 32;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;
type PublicKey = <Kem as hpke::Kem>::PublicKey;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

/// Why a box could not be made or opened. No variant ever carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{field} is not valid base64: {reason}")]
    Base64 { field: &'static str, reason: String },
    #[error("{field} has {got} bytes; an X25519 key has {KEY_LEN}")]
    KeyLength { field: &'static str, got: usize },
    #[error("sealed box algorithm {alg:?} is not supported (only {SEAL_ALG:?})")]
    UnknownAlg { alg: String },
    #[error("the recipient public key cannot be used (a low-order X25519 point)")]
    UnusablePublicKey,
    #[error(
        "authentication failed: the box was sealed to another key or for other associated data \
         (another host, VM or generation), or it was altered"
    )]
    Authentication,
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error("the opened box is not a guest credential ({0})")]
    Payload(String),
}

/// A host's X25519 key pair. The secret is zeroized on drop and never shown by `Debug`.
pub struct SealKeyPair {
    secret: PrivateKey,
    public: PublicKey,
}

impl std::fmt::Debug for SealKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKeyPair")
            .field("public", &self.public_b64())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl SealKeyPair {
    /// A new key pair from the OS random source.
    pub fn generate() -> SealKeyPair {
        Self::generate_with_rng(&mut UnwrapErr(getrandom::SysRng))
    }

    fn generate_with_rng(rng: &mut impl CryptoRng) -> SealKeyPair {
        let (secret, public) = Kem::gen_keypair_with_rng(rng);
        SealKeyPair { secret, public }
    }

    /// The key pair of a stored secret. X25519 clamps the scalar, so this cannot fail on
    /// content; [`secret_bytes`](Self::secret_bytes) gives back the clamped form, which is the
    /// same bytes for every key [`generate`](Self::generate) made.
    pub fn from_secret_bytes(mut bytes: [u8; KEY_LEN]) -> Result<SealKeyPair, SealError> {
        let secret = PrivateKey::from_bytes(&bytes);
        bytes.zeroize();
        let secret = secret.map_err(|_| SealError::KeyLength {
            field: "secret key",
            got: KEY_LEN,
        })?;
        let public = Kem::sk_to_pk(&secret);
        Ok(SealKeyPair { secret, public })
    }

    /// The secret scalar, for storing it (zeroized when the returned value drops).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        self.secret.write_exact(out.as_mut_slice());
        out
    }

    /// The public key, standard base64: what `HostInfo.seal_key` publishes.
    pub fn public_b64(&self) -> String {
        BASE64.encode(self.public.to_bytes())
    }
}

fn decode_b64(field: &'static str, text: &str) -> Result<Vec<u8>, SealError> {
    BASE64.decode(text).map_err(|e| SealError::Base64 {
        field,
        reason: e.to_string(),
    })
}

fn decode_key(field: &'static str, text: &str) -> Result<Vec<u8>, SealError> {
    let bytes = decode_b64(field, text)?;
    if bytes.len() != KEY_LEN {
        return Err(SealError::KeyLength {
            field,
            got: bytes.len(),
        });
    }
    Ok(bytes)
}

/// Seals `plaintext` to the host whose public key (standard base64) is `recipient_public_b64`;
/// only [`open`] with that host's key pair and the same `aad` gives it back.
pub fn seal(
    recipient_public_b64: &str,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    let field = "recipient public key";
    let bytes = decode_key(field, recipient_public_b64)?;
    let public = PublicKey::from_bytes(&bytes).map_err(|_| SealError::KeyLength {
        field,
        got: bytes.len(),
    })?;
    let (enc, ciphertext) = seal_with_rng(
        &public,
        INFO,
        aad,
        plaintext,
        &mut UnwrapErr(getrandom::SysRng),
    )?;
    Ok(SealedBox {
        alg: SEAL_ALG.to_owned(),
        enc: BASE64.encode(enc.to_bytes()),
        ciphertext: BASE64.encode(ciphertext),
    })
}

/// The HPKE single-shot seal of this module's suite (the ephemeral key drawn from `rng`).
fn seal_with_rng(
    public: &PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(EncappedKey, Vec<u8>), SealError> {
    hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        public,
        info,
        plaintext,
        aad,
        rng,
    )
    .map_err(|e| match e {
        hpke::HpkeError::EncapError => SealError::UnusablePublicKey,
        other => SealError::Seal(other.to_string()),
    })
}

/// Opens a box sealed to `key` with associated data `aad`.
pub fn open(
    key: &SealKeyPair,
    aad: &[u8],
    sealed: &SealedBox,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.alg != SEAL_ALG {
        return Err(SealError::UnknownAlg {
            // The name comes from outside: bounded, so an absurd one cannot flood a log line.
            alg: sealed.alg.chars().take(64).collect(),
        });
    }
    let enc = decode_key("enc", &sealed.enc)?;
    let ciphertext = decode_b64("ciphertext", &sealed.ciphertext)?;
    open_with_info(key, INFO, aad, &enc, &ciphertext)
}

/// The HPKE single-shot open of this module's suite.
fn open_with_info(
    key: &SealKeyPair,
    info: &[u8],
    aad: &[u8],
    enc: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let enc = EncappedKey::from_bytes(enc).map_err(|_| SealError::KeyLength {
        field: "enc",
        got: enc.len(),
    })?;
    // Every failure (a low-order `enc` included) is the same answer: this box does not open.
    hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &key.secret,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::Authentication)
}

/// Seals a VM's credential (as JSON) to `host`'s public key, bound to the host name, the VM uid
/// and the identity generation ([`identity_aad`]).
pub fn seal_credential(
    host_public_b64: &str,
    host: &str,
    vm_uid: &str,
    generation: u64,
    credential: &GuestCredential,
) -> Result<SealedBox, SealError> {
    let json = Zeroizing::new(
        serde_json::to_vec(credential)
            .map_err(|e| SealError::Payload(json_error_kind(&e).to_owned()))?,
    );
    seal(
        host_public_b64,
        &identity_aad(host, vm_uid, generation),
        &json,
    )
}

/// Opens what [`seal_credential`] made, given the same host, VM uid and generation.
pub fn open_credential(
    key: &SealKeyPair,
    host: &str,
    vm_uid: &str,
    generation: u64,
    sealed: &SealedBox,
) -> Result<GuestCredential, SealError> {
    let json = open(key, &identity_aad(host, vm_uid, generation), sealed)?;
    // serde_json's messages can quote the input: only the kind and position are kept.
    serde_json::from_slice(&json).map_err(|e| {
        SealError::Payload(format!(
            "{} at line {}, column {}",
            json_error_kind(&e),
            e.line(),
            e.column()
        ))
    })
}

/// The kind of a serde_json error, without its message (which may quote the input).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "wrong JSON shape",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
