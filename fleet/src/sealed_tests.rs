#![allow(clippy::unwrap_used)]

use super::*;
use hpke::rand_core::{Infallible, TryCryptoRng, TryRng};

fn credential() -> GuestCredential {
    GuestCredential {
        auth_url: "http://keystone.example:5000/v3".into(),
        application_credential_id: "6b1ac2f0e4d64c9aa0b7f53f4b1b9d2e".into(),
        // Awkward on purpose: quotes, colon, hash, backslash, non-ASCII.
        application_credential_secret: "s3:cr'et\"#\\é-value".into(),
        project_id: "p-1".into(),
        region: Some("RegionOne".into()),
    }
}

/// Hands out fixed bytes: reproducible ephemeral keys for known-answer and fixture tests.
struct FixedRng(Vec<u8>);

impl TryRng for FixedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("HPKE draws whole keys")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("HPKE draws whole keys")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(self.0.len() >= dst.len(), "fixed randomness exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}

impl TryCryptoRng for FixedRng {}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn credential_round_trip() {
    let key = SealKeyPair::generate();
    let sealed = seal_credential(&key.public_b64(), "h1", "u1", 3, &credential()).unwrap();
    assert_eq!(sealed.alg, SEAL_ALG);
    assert_eq!(BASE64.decode(&sealed.enc).unwrap().len(), KEY_LEN);
    let opened = open_credential(&key, "h1", "u1", 3, &sealed).unwrap();
    assert_eq!(opened, credential());
    // Nothing of the secret is visible in the box.
    let shown = serde_json::to_string(&sealed).unwrap();
    assert!(!shown.contains("s3:cr"), "{shown}");
}

#[test]
fn each_box_has_its_own_ephemeral_key() {
    let key = SealKeyPair::generate();
    let a = seal(&key.public_b64(), b"aad", b"same").unwrap();
    let b = seal(&key.public_b64(), b"aad", b"same").unwrap();
    assert_ne!(a.enc, b.enc);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn key_pair_survives_storage() {
    let key = SealKeyPair::generate();
    let again = SealKeyPair::from_secret_bytes(*key.secret_bytes()).unwrap();
    assert_eq!(again.public_b64(), key.public_b64());
    assert_eq!(*again.secret_bytes(), *key.secret_bytes());
    let sealed = seal(&key.public_b64(), b"x", b"hello").unwrap();
    assert_eq!(open(&again, b"x", &sealed).unwrap().as_slice(), b"hello");
}

#[test]
fn debug_shows_no_secret() {
    let key = SealKeyPair::from_secret_bytes([7u8; 32]).unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains(&key.public_b64()), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let secret_b64 = BASE64.encode(*key.secret_bytes());
    let secret_hex = hex::encode(*key.secret_bytes());
    assert!(!shown.contains(&secret_b64) && !shown.contains(&secret_hex));
    assert!(!shown.contains("7, 7"), "{shown}");
}

#[test]
fn another_hosts_key_does_not_open() {
    let right = SealKeyPair::generate();
    let wrong = SealKeyPair::generate();
    let sealed = seal_credential(&right.public_b64(), "h1", "u1", 1, &credential()).unwrap();
    assert_eq!(
        open_credential(&wrong, "h1", "u1", 1, &sealed),
        Err(SealError::Authentication)
    );
}

#[test]
fn box_is_bound_to_host_vm_and_generation() {
    let key = SealKeyPair::generate();
    let sealed = seal_credential(&key.public_b64(), "h1", "u1", 5, &credential()).unwrap();
    for (host, uid, generation) in [("h2", "u1", 5), ("h1", "u2", 5), ("h1", "u1", 4)] {
        assert_eq!(
            open_credential(&key, host, uid, generation, &sealed),
            Err(SealError::Authentication),
            "{host}/{uid}/{generation} must not open"
        );
    }
    assert!(open_credential(&key, "h1", "u1", 5, &sealed).is_ok());
}

fn flip(b64: &str, at: usize) -> String {
    let mut bytes = BASE64.decode(b64).unwrap();
    bytes[at] ^= 0x01;
    BASE64.encode(bytes)
}

#[test]
fn altered_boxes_do_not_open() {
    let key = SealKeyPair::generate();
    let sealed = seal(&key.public_b64(), b"aad", b"attack at dawn").unwrap();
    let ct_len = BASE64.decode(&sealed.ciphertext).unwrap().len();
    assert_eq!(ct_len, b"attack at dawn".len() + 16, "ciphertext plus tag");
    for at in [0, 5, ct_len - 1] {
        let altered = SealedBox {
            ciphertext: flip(&sealed.ciphertext, at),
            ..sealed.clone()
        };
        assert_eq!(
            open(&key, b"aad", &altered),
            Err(SealError::Authentication),
            "ciphertext byte {at}"
        );
    }
    for at in [0, 31] {
        let altered = SealedBox {
            enc: flip(&sealed.enc, at),
            ..sealed.clone()
        };
        assert_eq!(
            open(&key, b"aad", &altered),
            Err(SealError::Authentication),
            "enc byte {at}"
        );
    }
    let truncated = SealedBox {
        ciphertext: BASE64.encode(&BASE64.decode(&sealed.ciphertext).unwrap()[..10]),
        ..sealed.clone()
    };
    assert_eq!(
        open(&key, b"aad", &truncated),
        Err(SealError::Authentication)
    );
}

#[test]
fn unknown_algorithm_is_refused() {
    let key = SealKeyPair::generate();
    let sealed = SealedBox {
        alg: "rsa-oaep".into(),
        ..seal(&key.public_b64(), b"", b"x").unwrap()
    };
    let err = open(&key, b"", &sealed).unwrap_err();
    assert_eq!(
        err,
        SealError::UnknownAlg {
            alg: "rsa-oaep".into()
        }
    );
    assert!(err.to_string().contains("rsa-oaep"), "{err}");
}

#[test]
fn malformed_fields_are_named() {
    let key = SealKeyPair::generate();
    let good = seal(&key.public_b64(), b"", b"x").unwrap();
    let bad_enc = SealedBox {
        enc: "not base64!".into(),
        ..good.clone()
    };
    let err = open(&key, b"", &bad_enc).unwrap_err();
    assert!(
        matches!(err, SealError::Base64 { field: "enc", .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("enc is not valid base64"),
        "{err}"
    );
    let bad_ct = SealedBox {
        ciphertext: "@@".into(),
        ..good.clone()
    };
    assert!(matches!(
        open(&key, b"", &bad_ct),
        Err(SealError::Base64 {
            field: "ciphertext",
            ..
        })
    ));
    let short_enc = SealedBox {
        enc: BASE64.encode([1u8; 31]),
        ..good
    };
    assert_eq!(
        open(&key, b"", &short_enc),
        Err(SealError::KeyLength {
            field: "enc",
            got: 31
        })
    );
    let err = seal(&BASE64.encode([9u8; 33]), b"", b"x").unwrap_err();
    assert_eq!(
        err,
        SealError::KeyLength {
            field: "recipient public key",
            got: 33
        }
    );
    assert!(
        err.to_string()
            .contains("recipient public key has 33 bytes"),
        "{err}"
    );
    assert!(matches!(
        seal("???", b"", b"x"),
        Err(SealError::Base64 {
            field: "recipient public key",
            ..
        })
    ));
}

#[test]
fn low_order_public_key_is_refused() {
    // The all-zero point: every DH with it is zero, which RFC 9180 says to reject.
    assert_eq!(
        seal(&BASE64.encode([0u8; 32]), b"", b"x"),
        Err(SealError::UnusablePublicKey)
    );
}

#[test]
fn payload_that_is_no_credential_says_so_without_quoting_it() {
    let key = SealKeyPair::generate();
    let aad = identity_aad("h1", "u1", 1);
    let sealed = seal(
        &key.public_b64(),
        &aad,
        br#"{"auth_url": 12, "leaked": "top-secret"}"#,
    )
    .unwrap();
    let err = open_credential(&key, "h1", "u1", 1, &sealed).unwrap_err();
    assert!(matches!(err, SealError::Payload(_)), "{err}");
    assert!(!err.to_string().contains("top-secret"), "{err}");
}

/// RFC 9180, appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base
/// mode, sequence number 0. Proves the suite this module picks is the one its name says.
#[test]
fn rfc9180_a2_known_answer() {
    let info = hex::decode("4f6465206f6e2061204772656369616e2055726e").unwrap();
    let ikm_e =
        hex::decode("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b").unwrap();
    let pk_rm = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    let sk_rm = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    let enc = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    let pt = hex::decode("4265617574792069732074727574682c20747275746820626561757479").unwrap();
    let aad = hex::decode("436f756e742d30").unwrap();
    let ct = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db\
              21993c62ce81883d2dd1b51a28";

    let recipient = SealKeyPair::from_secret_bytes(unhex(sk_rm)).unwrap();
    assert_eq!(recipient.public_b64(), BASE64.encode(unhex::<32>(pk_rm)));

    // Sender: the ephemeral key comes from ikmE through DeriveKeyPair.
    let (got_enc, got_ct) =
        seal_with_rng(&recipient.public, &info, &aad, &pt, &mut FixedRng(ikm_e)).unwrap();
    assert_eq!(hex::encode(got_enc.to_bytes()), enc);
    assert_eq!(hex::encode(&got_ct), ct);

    // Receiver.
    let opened = open_with_info(
        &recipient,
        &info,
        &aad,
        &hex::decode(enc).unwrap(),
        &hex::decode(ct).unwrap(),
    )
    .unwrap();
    assert_eq!(opened.as_slice(), pt.as_slice());
}

/// A box as stored on the bus by this version: later versions must still open it, and the
/// same key and randomness must still produce it byte for byte (any change of the suite, the
/// `info` string, the AAD layout or the encoding shows here).
#[test]
fn stored_box_format_is_pinned() {
    let host = SealKeyPair::generate_with_rng(&mut FixedRng(vec![0x11; 32]));
    let stored = concat!(
        r#"{"alg":"hpke-x25519-hkdf-sha256-chacha20poly1305","#,
        r#""enc":"47lwiqohp/HmKpXuKNHl1gsPzu1saFmQE6VLMY6eCxU=","#,
        r#""ciphertext":"G1ULnV0LUgAZoHKlyS03oBAGtYR7AspPJuglGRfpP8FKSg5AqQtS3oaORuZ/K4AcT9s6C09Dico"#,
        r#"jfAXWP0A0w/N3IeO55NySWEAL5zcUakm37wzHIHOceQ3+2zg+ZzQDusVOz6ZMPTFaWKkLdU2vGKcBa5XTUkxSMCt"#,
        r#"JK98DNcV2mera7+PcluRbtXycYh/2Ftmk5qHcSUgMTjTaXr46gZpPbWdBWuOS6xvfUXw/GQGiKs0BAqCE2jb5wnR"#,
        r#"O82ica1LHVMi+wnSYZQR5abgY/8WYBozJkV2T2Y8riFE="}"#,
    );
    let plaintext = serde_json::to_vec(&credential()).unwrap();
    let (enc, ct) = seal_with_rng(
        &host.public,
        INFO,
        &identity_aad("host-a", "vm-uid-1", 7),
        &plaintext,
        &mut FixedRng(vec![0x22; 32]),
    )
    .unwrap();
    let made = SealedBox {
        alg: SEAL_ALG.into(),
        enc: BASE64.encode(enc.to_bytes()),
        ciphertext: BASE64.encode(ct),
    };
    assert_eq!(serde_json::to_string(&made).unwrap(), stored);
    let sealed: SealedBox = serde_json::from_str(stored).unwrap();
    assert_eq!(
        open_credential(&host, "host-a", "vm-uid-1", 7, &sealed).unwrap(),
        credential()
    );
}
