//! YubiKey PIV touch: a key plugged into this host signs a fresh random challenge with
//! a slot whose private key never leaves the YubiKey, and the daemon verifies the
//! signature with the public key it stored at enrolment.
//!
//! Unlike the other factors this one is not a typed answer: the daemon talks to the
//! key through pcscd (the `yubikey` crate over PC/SC) when the user answers the
//! challenge with an empty line (or when the PIV factor is the only one, and the
//! module answers for them). The slot must require a touch (touch policy `always` or
//! `cached`) and no PIN (PIN policy `never`): the daemon cannot type a PIN, and a
//! signature without a touch proves nothing about presence. Only ECC P-256 and P-384
//! slots are supported. It is never attempted for a remote request: the key would be
//! the host's, not the remote user's.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use yubikey::piv::{self, AlgorithmId, ManagementAlgorithmId, SlotId};
use yubikey::{PinPolicy, TouchPolicy, YubiKey};

use super::{Factor, FactorError, Verification};
use crate::config::FactorKind;

/// What enrolment stores: which key and slot, and the slot's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PivParams {
    /// The YubiKey's serial number; the challenge goes to this key only.
    pub serial: u32,
    /// Slot, e.g. `9e`.
    pub slot: String,
    /// `ECCP256` or `ECCP384`.
    pub algorithm: String,
    /// The slot's public key, an uncompressed SEC1 point, hex.
    pub public_key: String,
}

impl PivParams {
    /// Reads parameters stored as JSON.
    pub fn from_json(text: &str) -> Result<PivParams, FactorError> {
        serde_json::from_str(text).map_err(|e| FactorError::BadParams(e.to_string()))
    }

    /// The JSON stored in the database.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a slot name (`9a`, `9c`, `9d`, `9e`, or a retired slot `82`..`95`).
pub fn parse_slot(text: &str) -> Result<SlotId, String> {
    let byte = u8::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| format!("slot {text:?} is not a PIV slot such as 9e or 9c"))?;
    SlotId::try_from(byte).map_err(|_| format!("slot {text:?} is not a PIV key slot"))
}

fn slot_name(slot: SlotId) -> String {
    format!("{:02x}", u8::from(slot))
}

fn algorithm_name(alg: AlgorithmId) -> Option<&'static str> {
    match alg {
        AlgorithmId::EccP256 => Some("ECCP256"),
        AlgorithmId::EccP384 => Some("ECCP384"),
        _ => None,
    }
}

fn open(serial: Option<u32>) -> Result<YubiKey, String> {
    match serial {
        Some(s) => YubiKey::open_by_serial(s.into())
            .map_err(|e| format!("no YubiKey with serial {s} is plugged in ({e})")),
        None => YubiKey::open().map_err(|e| {
            format!("no YubiKey found through pcscd ({e}); plug one in, or give --serial when several are")
        }),
    }
}

/// Whether the key with this serial is plugged in (and pcscd answers).
pub fn present(serial: u32) -> bool {
    YubiKey::open_by_serial(serial.into()).is_ok()
}

/// Reads the slot of the key (by serial, or the only key present) and returns what to
/// store, refusing slots that would not prove presence or that the daemon cannot use.
pub fn enrol(serial: Option<u32>, slot_text: &str) -> Result<PivParams, String> {
    let slot = parse_slot(slot_text)?;
    let mut yk = open(serial)?;
    let serial = yk.serial().0;
    let meta = piv::metadata(&mut yk, slot).map_err(|e| {
        format!(
            "cannot read slot {} of YubiKey {serial} ({e}); it needs firmware 5.3 or later and a key in the slot",
            slot_name(slot)
        )
    })?;
    let ManagementAlgorithmId::Asymmetric(alg) = meta.algorithm else {
        return Err(format!("slot {} holds no asymmetric key", slot_name(slot)));
    };
    let Some(algorithm) = algorithm_name(alg) else {
        return Err(format!(
            "slot {} holds a {alg:?} key; stepup supports ECC P-256 and P-384 (ykman piv keys generate -a ECCP256 ...)",
            slot_name(slot)
        ));
    };
    let how_to = format!(
        "generate a key that needs a touch and no PIN: ykman piv keys generate -a ECCP256 --touch-policy ALWAYS --pin-policy NEVER {} pubkey.pem",
        slot_name(slot)
    );
    match meta.policy {
        Some((_, TouchPolicy::Never)) => {
            return Err(format!(
                "slot {} does not require a touch (touch policy never), so a signature would not prove anyone is there; {how_to}",
                slot_name(slot)
            ));
        }
        Some((PinPolicy::Once | PinPolicy::Always, _)) => {
            return Err(format!(
                "slot {} requires a PIN, which stepupd cannot type; {how_to}",
                slot_name(slot)
            ));
        }
        None => {
            return Err(format!(
                "slot {} reports no touch policy; {how_to}",
                slot_name(slot)
            ));
        }
        _ => {}
    }
    let public = meta
        .public
        .ok_or_else(|| format!("slot {} reports no public key", slot_name(slot)))?;
    let point = public.subject_public_key.raw_bytes().to_vec();
    // Check now that the point is one we can verify against.
    verifying_key_check(algorithm, &point)?;
    Ok(PivParams {
        serial,
        slot: slot_name(slot),
        algorithm: algorithm.to_string(),
        public_key: point.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| "bad hex".to_string()))
        .collect()
}

fn verifying_key_check(algorithm: &str, point: &[u8]) -> Result<(), String> {
    match algorithm {
        "ECCP256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(|_| ())
            .map_err(|_| "the slot's P-256 public key is not a valid point".to_string()),
        "ECCP384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(|_| ())
            .map_err(|_| "the slot's P-384 public key is not a valid point".to_string()),
        other => Err(format!("unsupported algorithm {other}")),
    }
}

/// Verifies a DER ECDSA `signature` over the prehashed `digest` with the stored key.
pub fn signature_valid(params: &PivParams, digest: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let Ok(point) = hex_bytes(&params.public_key) else {
        return false;
    };
    match params.algorithm.as_str() {
        "ECCP256" => {
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point),
                p256::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        "ECCP384" => {
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point),
                p384::ecdsa::Signature::from_der(signature),
            ) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        _ => false,
    }
}

/// Asks the enrolled key to sign a fresh random challenge (the user touches it) and
/// verifies the signature. `Ok(false)`: a signature came back but does not verify
/// (another key in the slot); `Err`: no signature (key absent, no touch in time, PC/SC
/// failure).
pub fn challenge(params: &PivParams) -> Result<bool, String> {
    let slot = parse_slot(&params.slot)?;
    let (alg, digest): (AlgorithmId, Vec<u8>) = {
        let mut nonce = [0u8; 32];
        crate::crypto::random_bytes(&mut nonce).map_err(|e| e.to_string())?;
        match params.algorithm.as_str() {
            "ECCP256" => (AlgorithmId::EccP256, sha2::Sha256::digest(nonce).to_vec()),
            "ECCP384" => (AlgorithmId::EccP384, sha2::Sha384::digest(nonce).to_vec()),
            other => return Err(format!("unsupported algorithm {other}")),
        }
    };
    let mut yk = open(Some(params.serial))?;
    let signature = piv::sign_data(&mut yk, &digest, alg, slot)
        .map_err(|e| format!("the YubiKey did not sign ({e}); was it touched in time?"))?;
    Ok(signature_valid(params, &digest, &signature))
}

/// The PIV factor: answered with an empty line, verified by a touch.
#[derive(Debug, Clone, Copy)]
pub struct PivFactor;

impl Factor for PivFactor {
    fn kind(&self) -> FactorKind {
        FactorKind::Piv
    }

    fn recognises(&self, answer: &str, _params: &str) -> bool {
        answer.trim().is_empty()
    }

    fn verify(
        &self,
        _secret: &[u8],
        params: &str,
        _answer: &str,
        _now: u64,
    ) -> Result<Verification, FactorError> {
        let params = PivParams::from_json(params)?;
        match challenge(&params) {
            // A fresh random challenge cannot be replayed; the counter only has to
            // grow for the store's compare-and-set.
            Ok(true) => Ok(Verification::Accepted {
                counter: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i64),
            }),
            Ok(false) => Ok(Verification::Rejected),
            Err(e) => Err(FactorError::Device(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    #[test]
    fn slots_parse_by_their_hex_names() {
        assert_eq!(parse_slot("9e").unwrap(), SlotId::CardAuthentication);
        assert_eq!(parse_slot("9c").unwrap(), SlotId::Signature);
        assert_eq!(parse_slot("0x9a").unwrap(), SlotId::Authentication);
        assert!(parse_slot("zz").is_err());
        assert!(parse_slot("01").is_err());
    }

    fn params_for(key: &p256::ecdsa::SigningKey) -> PivParams {
        let point = key.verifying_key().to_encoded_point(false);
        PivParams {
            serial: 1,
            slot: "9e".into(),
            algorithm: "ECCP256".into(),
            public_key: point
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    #[test]
    fn a_signature_verifies_only_with_the_enrolled_key_and_digest() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let other = p256::ecdsa::SigningKey::from_slice(&[8u8; 32]).unwrap();
        let digest = sha2::Sha256::digest(b"challenge");
        let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
        let der = sig.to_der();
        let p = params_for(&key);
        assert!(signature_valid(&p, &digest, der.as_bytes()));
        assert!(!signature_valid(
            &p,
            &sha2::Sha256::digest(b"other"),
            der.as_bytes()
        ));
        assert!(!signature_valid(
            &params_for(&other),
            &digest,
            der.as_bytes()
        ));
        assert!(!signature_valid(&p, &digest, b"not der"));
        let round = PivParams::from_json(&p.to_json()).unwrap();
        assert_eq!(round, p);
    }
}
