//! A Yubico OTP as the user types it (a touch on the key) at the step-up prompt.
//!
//! Checks: `split_otp`, `looks_like_otp`, `modhex_decode` and `decrypt_token` never
//! panic; `looks_like_otp` is exactly "`split_otp` accepts"; a split OTP is 32 to 48
//! modhex characters with the token last; modhex decoding then encoding gives the
//! lower-cased text back; a token that decrypts re-encrypts to one that decrypts to
//! the same fields; and the factor accepts an answer only if it is an OTP of the
//! enrolled public id whose token decrypts with the enrolled key to the enrolled
//! private id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::factors::yubico_otp::{
    OTP_MAX_LEN, OTP_MIN_LEN, TOKEN_LEN, Token, YubicoOtpFactor, decrypt_token, encrypt_token,
    looks_like_otp, modhex_decode, modhex_encode, split_otp,
};
use stepupd::factors::{Factor, Verification};

/// The enrolment the answers are checked against (the key and ids of the unit tests).
const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const PUBLIC_ID: &str = "cbcdcecfcgvv";
const PRIVATE_ID: [u8; 6] = [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
const PARAMS: &str = r#"{"public_id":"cbcdcecfcgvv","private_id":"0a0b0c0d0e0f"}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(bytes) = modhex_decode(answer) {
        assert_eq!(modhex_encode(&bytes), answer.to_ascii_lowercase());
    }

    let split = split_otp(answer);
    assert_eq!(looks_like_otp(answer), split.is_ok());
    if let Ok((public_id, token)) = &split {
        assert!((OTP_MIN_LEN..=OTP_MAX_LEN).contains(&answer.len()));
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(format!("{public_id}{token}"), answer.to_ascii_lowercase());
        assert!(modhex_decode(public_id).is_ok() && modhex_decode(token).is_ok());
        if let Ok(decoded) = decrypt_token(&KEY, token) {
            round_trip(&decoded);
        }
    }
    // The token alone, as when the answer is exactly 32 characters of anything.
    if let Ok(decoded) = decrypt_token(&KEY, answer) {
        round_trip(&decoded);
    }

    let factor = YubicoOtpFactor;
    let recognised = factor.recognises(answer, PARAMS);
    let verdict = factor
        .verify(&KEY, PARAMS, answer, 0)
        .expect("the enrolment is valid, so every answer gets a verdict");
    if let Verification::Accepted { counter } = verdict {
        assert!(
            recognised,
            "accepted an answer the prompt would not route here"
        );
        let (public_id, token) = split.expect("accepted, so it splits");
        assert_eq!(public_id, PUBLIC_ID);
        let decoded = decrypt_token(&KEY, &token).expect("accepted, so it decrypts");
        assert_eq!(decoded.private_id, PRIVATE_ID);
        assert_eq!(counter, decoded.counter());
        assert!((0..=0x7f_ffff).contains(&counter));
    }
});

fn round_trip(token: &Token) {
    assert_eq!(
        token.usage_counter & 0x8000,
        0,
        "Caps Lock flag left in the counter"
    );
    assert!(token.timestamp < 1 << 24);
    let again = encrypt_token(&KEY, token).expect("the key has the right length");
    assert_eq!(decrypt_token(&KEY, &again).as_ref(), Ok(token));
}
