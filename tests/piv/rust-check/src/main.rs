//! End-to-end check of the Rust `yubikey` crate (0.8) against the virtual
//! YubiKey PIV card (tests/piv/virtual_piv.py), run inside run-card.sh.
//!
//! Usage: piv-rust-check [--slot 9e|9c] [--expect-auth-error]
//!
//! Environment (set by run-card.sh): PIV_SERIAL (required), PIV_PIN
//! (default 123456), PIV_PUBKEY_9E / PIV_PUBKEY_9C (optional: the metadata
//! public key is compared with it).
//!
//! Steps: open the key by serial; read the slot's metadata (algorithm,
//! PIN/touch policy, origin, public key); verify the PIN; sign (a) a random
//! 32-byte digest and check it with `verify_prehash`, (b) SHA-256 of a random
//! message and check it as a plain ECDSA-P256-SHA256 signature over the
//! message. Prints `OK` (exit 0) or `ERROR: ...` (exit 1). With
//! --expect-auth-error the sign must fail with `Error::AuthenticationError`
//! (what the crate makes of status 6982: missing touch or PIN).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use std::io::Read;
use yubikey::piv::{self, AlgorithmId, ManagementAlgorithmId, SlotId};
use yubikey::{Serial, YubiKey};

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run() -> Result<(), String> {
    let mut slot_name = "9e".to_string();
    let mut expect_auth_error = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--slot" => slot_name = args.next().ok_or("--slot needs a value")?,
            "--expect-auth-error" => expect_auth_error = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let slot: SlotId = slot_name
        .parse()
        .map_err(|e| format!("slot {slot_name}: {e}"))?;
    let serial: u32 = std::env::var("PIV_SERIAL")
        .map_err(|_| "PIV_SERIAL not set (run inside tests/piv/run-card.sh)")?
        .parse()
        .map_err(|e| format!("PIV_SERIAL: {e}"))?;
    let pin = std::env::var("PIV_PIN").unwrap_or_else(|_| "123456".into());

    // 1. Open by serial (SELECT PIV, GET VERSION, GET SERIAL on each reader).
    let mut yk = YubiKey::open_by_serial(Serial(serial))
        .map_err(|e| format!("open_by_serial({serial}): {e}"))?;
    println!(
        "opened: reader={:?} version={} serial={}",
        yk.name(),
        yk.version(),
        yk.serial()
    );

    // 2. Metadata (GET METADATA, INS F7): algorithm, policies, public key.
    let md = piv::metadata(&mut yk, slot).map_err(|e| format!("metadata({slot}): {e}"))?;
    println!(
        "metadata {slot_name}: algorithm={:?} policy={:?} origin={:?}",
        md.algorithm, md.policy, md.origin
    );
    if md.algorithm != ManagementAlgorithmId::Asymmetric(AlgorithmId::EccP256) {
        return Err(format!("slot {slot_name} is not ECCP256: {:?}", md.algorithm));
    }
    let spki = md.public.ok_or("metadata has no public key")?;
    let point = spki.subject_public_key.raw_bytes();
    let vk = VerifyingKey::from_sec1_bytes(point).map_err(|e| format!("public key: {e}"))?;
    println!("public key: {}", hex(point));
    let env_key = format!("PIV_PUBKEY_{}", slot_name.to_uppercase());
    if let Ok(path) = std::env::var(&env_key) {
        let pem = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let expected =
            VerifyingKey::from_public_key_pem(&pem).map_err(|e| format!("{path}: {e}"))?;
        if expected != vk {
            return Err(format!("metadata public key differs from {env_key}"));
        }
        println!("metadata public key matches {env_key}");
    }

    // 3. PIN (VERIFY, INS 20). Needed for PIN policy once/always; harmless
    //    for `never`.
    yk.verify_pin(pin.as_bytes())
        .map_err(|e| format!("verify_pin: {e}"))?;
    println!("PIN verified");

    // 4a. Sign a random digest (GENERAL AUTHENTICATE, INS 87, 7C{82,81}).
    //     The crate passes the bytes as they are: for ECC it wants the hash,
    //     at most the key size (32 bytes for P-256); the card signs it as a
    //     prehashed value and returns a DER ECDSA signature.
    let digest: [u8; 32] = random()?;
    let result = piv::sign_data(&mut yk, &digest, AlgorithmId::EccP256, slot);
    if expect_auth_error {
        return match result {
            Err(yubikey::Error::AuthenticationError) => {
                println!("sign failed as expected: AuthenticationError (card said 6982)");
                Ok(())
            }
            Err(e) => Err(format!("expected AuthenticationError, got {e:?}")),
            Ok(_) => Err("expected AuthenticationError, but the card signed".into()),
        };
    }
    let der = result.map_err(|e| format!("sign_data: {e:?}"))?;
    let sig = Signature::from_der(&der).map_err(|e| format!("signature DER: {e}"))?;
    vk.verify_prehash(&digest, &sig)
        .map_err(|e| format!("verify_prehash: {e}"))?;
    println!("signature over random digest verified ({} bytes DER)", der.len());

    // 4b. Same convention seen from the message side: signing SHA-256(msg)
    //     gives an ordinary ECDSA-P256-SHA256 signature over msg. PIN policy
    //     `always` (9c) needs a fresh VERIFY before every signature.
    let msg: [u8; 64] = random()?;
    let digest = Sha256::digest(msg);
    yk.verify_pin(pin.as_bytes())
        .map_err(|e| format!("verify_pin: {e}"))?;
    let der = piv::sign_data(&mut yk, &digest, AlgorithmId::EccP256, slot)
        .map_err(|e| format!("sign_data: {e:?}"))?;
    let sig = Signature::from_der(&der).map_err(|e| format!("signature DER: {e}"))?;
    vk.verify(&msg, &sig)
        .map_err(|e| format!("verify(message): {e}"))?;
    println!("signature over SHA-256(message) verified as ECDSA-P256-SHA256");
    Ok(())
}

fn main() {
    match run() {
        Ok(()) => println!("OK"),
        Err(e) => {
            println!("ERROR: {e}");
            std::process::exit(1);
        }
    }
}
