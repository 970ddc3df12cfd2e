//! TOTP (RFC 6238) with SHA-1, SHA-256 or SHA-512, 6 to 8 digits.
//!
//! A code is accepted for the current time step and one step either side (clock
//! skew); the step that matched is returned as the counter so the store can refuse
//! the same step twice. All three candidate steps are always computed and compared in
//! constant time, so timing does not reveal which step (if any) matched.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder};

use super::{Factor, FactorError, Verification};
use crate::config::FactorKind;

/// Steps either side of now that are accepted.
pub const SKEW_STEPS: i64 = 1;
/// Shortest secret accepted, in bytes (RFC 4226 §4: at least 128 bits).
pub const MIN_SECRET_LEN: usize = 16;
/// Length of secrets the daemon generates (160 bits, as RFC 4226 recommends).
pub const GENERATED_SECRET_LEN: usize = 20;

/// Hash used by the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TotpAlgorithm {
    /// HMAC-SHA1, what nearly every authenticator app uses.
    #[serde(rename = "SHA1")]
    Sha1,
    /// HMAC-SHA256.
    #[serde(rename = "SHA256")]
    Sha256,
    /// HMAC-SHA512.
    #[serde(rename = "SHA512")]
    Sha512,
}

impl TotpAlgorithm {
    /// Parses `SHA1`, `SHA256`, `SHA512` (case-insensitive, `SHA-1` accepted too).
    pub fn parse(text: &str) -> Result<TotpAlgorithm, String> {
        match text.to_ascii_uppercase().replace('-', "").as_str() {
            "" | "SHA1" => Ok(TotpAlgorithm::Sha1),
            "SHA256" => Ok(TotpAlgorithm::Sha256),
            "SHA512" => Ok(TotpAlgorithm::Sha512),
            _ => Err(format!(
                "unknown TOTP algorithm {text:?}: use SHA1, SHA256 or SHA512"
            )),
        }
    }

    /// The name used in otpauth URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
            TotpAlgorithm::Sha512 => "SHA512",
        }
    }

    fn to_lib(self) -> Algorithm {
        match self {
            TotpAlgorithm::Sha1 => Algorithm::SHA1,
            TotpAlgorithm::Sha256 => Algorithm::SHA256,
            TotpAlgorithm::Sha512 => Algorithm::SHA512,
        }
    }
}

/// Per-factor TOTP parameters, stored as JSON beside the sealed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpParams {
    /// HMAC hash.
    pub algorithm: TotpAlgorithm,
    /// Code length, 6 to 8.
    pub digits: u8,
    /// Step length in seconds.
    pub period: u32,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period: 30,
        }
    }
}

impl TotpParams {
    /// Builds checked parameters; 0 for digits/period means the default.
    pub fn new(algorithm: &str, digits: u32, period: u32) -> Result<TotpParams, String> {
        let algorithm = TotpAlgorithm::parse(algorithm)?;
        let digits = if digits == 0 { 6 } else { digits };
        if !(6..=8).contains(&digits) {
            return Err(format!("TOTP digits must be 6, 7 or 8, not {digits}"));
        }
        let period = if period == 0 { 30 } else { period };
        if !(10..=300).contains(&period) {
            return Err(format!(
                "TOTP period must be between 10 and 300 seconds, not {period}"
            ));
        }
        Ok(TotpParams {
            algorithm,
            digits: digits as u8,
            period,
        })
    }

    /// Reads parameters stored as JSON.
    pub fn from_json(text: &str) -> Result<TotpParams, FactorError> {
        let p: TotpParams =
            serde_json::from_str(text).map_err(|e| FactorError::BadParams(e.to_string()))?;
        TotpParams::new(p.algorithm.as_str(), p.digits.into(), p.period)
            .map_err(FactorError::BadParams)
    }

    /// The JSON stored in the database.
    pub fn to_json(&self) -> String {
        // Serialising a plain struct of an enum and two integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Computes the code for time step `step`.
pub fn code_at_step(secret: &[u8], params: &TotpParams, step: u64) -> String {
    let totp = Builder::new()
        .with_algorithm(params.algorithm.to_lib())
        .with_digits(params.digits)
        .with_skew(0)
        .with_step_duration(u64::from(params.period))
        .with_secret(secret.to_vec())
        .build_noncompliant();
    totp.generate(step * u64::from(params.period)).to_string()
}

/// Decodes an RFC 4648 base32 secret (case-insensitive; spaces, dashes and `=`
/// padding ignored, as authenticator apps display them).
pub fn decode_base32(text: &str) -> Result<Vec<u8>, String> {
    let mut bits: u64 = 0;
    let mut nbits = 0u32;
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    for c in text.chars() {
        if c == ' ' || c == '-' || c == '=' {
            continue;
        }
        let v = match c.to_ascii_uppercase() {
            u @ 'A'..='Z' => u as u64 - 'A' as u64,
            d @ '2'..='7' => d as u64 - '2' as u64 + 26,
            _ => return Err(format!("secret is not base32: unexpected character {c:?}")),
        };
        bits = (bits << 5) | v;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Ok(out)
}

/// Encodes bytes as RFC 4648 base32 without padding.
pub fn encode_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut bits: u64 = 0;
    let mut nbits = 0u32;
    for &b in bytes {
        bits = (bits << 8) | u64::from(b);
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (5 - nbits)) & 31) as usize] as char);
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI authenticator apps scan.
pub fn otpauth_uri(secret: &[u8], params: &TotpParams, issuer: &str, account: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(account),
        encode_base32(secret),
        percent_encode(issuer),
        params.algorithm.as_str(),
        params.digits,
        params.period
    )
}

/// The TOTP factor.
#[derive(Debug, Clone, Copy)]
pub struct TotpFactor;

impl Factor for TotpFactor {
    fn kind(&self) -> FactorKind {
        FactorKind::Totp
    }

    fn recognises(&self, answer: &str, params: &str) -> bool {
        let digits = TotpParams::from_json(params).map_or(6, |p| usize::from(p.digits));
        answer.len() == digits && answer.bytes().all(|b| b.is_ascii_digit())
    }

    fn verify(
        &self,
        secret: &[u8],
        params: &str,
        answer: &str,
        now: u64,
    ) -> Result<Verification, FactorError> {
        let params = TotpParams::from_json(params)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(FactorError::BadSecret(format!(
                "{} bytes, need at least {MIN_SECRET_LEN}",
                secret.len()
            )));
        }
        if !self.recognises(answer, &params.to_json()) {
            return Ok(Verification::Rejected);
        }
        let current = (now / u64::from(params.period)) as i64;
        let mut matched: Option<i64> = None;
        for offset in -SKEW_STEPS..=SKEW_STEPS {
            let step = current + offset;
            if step < 0 {
                continue;
            }
            let code = code_at_step(secret, &params, step as u64);
            let equal: bool = code.as_bytes().ct_eq(answer.as_bytes()).into();
            // Keep the latest matching step; no early exit, so the loop's timing does
            // not depend on which step matched.
            if equal {
                matched = Some(step);
            }
        }
        Ok(match matched {
            Some(counter) => Verification::Accepted { counter },
            None => Verification::Rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1_KEY: &[u8] = b"12345678901234567890";
    const SHA256_KEY: &[u8] = b"12345678901234567890123456789012";
    const SHA512_KEY: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn params(alg: &str, digits: u32) -> TotpParams {
        TotpParams::new(alg, digits, 30).unwrap()
    }

    /// RFC 6238 Appendix B, every row and every algorithm.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let table: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(t, sha1, sha256, sha512) in table {
            let step = t / 30;
            assert_eq!(
                code_at_step(SHA1_KEY, &params("SHA1", 8), step),
                sha1,
                "t={t}"
            );
            assert_eq!(
                code_at_step(SHA256_KEY, &params("SHA256", 8), step),
                sha256,
                "t={t}"
            );
            assert_eq!(
                code_at_step(SHA512_KEY, &params("SHA512", 8), step),
                sha512,
                "t={t}"
            );
        }
    }

    #[test]
    fn verify_accepts_the_current_code_and_reports_its_step() {
        let p = params("SHA1", 8);
        let v = TotpFactor
            .verify(SHA1_KEY, &p.to_json(), "07081804", 1111111109)
            .unwrap();
        assert_eq!(
            v,
            Verification::Accepted {
                counter: 1111111109 / 30
            }
        );
    }

    #[test]
    fn verify_accepts_one_step_of_skew_either_side_but_not_two() {
        let p = params("SHA1", 6);
        let now = 1_700_000_000u64;
        let step = now / 30;
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = (step as i64 + offset) as u64;
            let code = code_at_step(SHA1_KEY, &p, s);
            let v = TotpFactor
                .verify(SHA1_KEY, &p.to_json(), &code, now)
                .unwrap();
            if ok {
                assert_eq!(
                    v,
                    Verification::Accepted { counter: s as i64 },
                    "offset {offset}"
                );
            } else {
                assert_eq!(v, Verification::Rejected, "offset {offset}");
            }
        }
    }

    #[test]
    fn wrong_malformed_and_wrong_length_codes_are_rejected() {
        let p = params("SHA1", 6).to_json();
        let now = 1_700_000_000u64;
        let right = code_at_step(SHA1_KEY, &params("SHA1", 6), now / 30);
        let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
        for answer in [
            wrong.as_str(),
            "",
            "12345",
            "1234567",
            "12345a",
            " 123456",
            "１２３４５６",
        ] {
            assert_eq!(
                TotpFactor.verify(SHA1_KEY, &p, answer, now).unwrap(),
                Verification::Rejected,
                "{answer:?}"
            );
        }
    }

    #[test]
    fn short_secrets_and_bad_params_are_errors_not_rejections() {
        let p = params("SHA1", 6).to_json();
        assert!(matches!(
            TotpFactor.verify(b"short", &p, "123456", 0),
            Err(FactorError::BadSecret(_))
        ));
        assert!(matches!(
            TotpFactor.verify(SHA1_KEY, "{}", "123456", 0),
            Err(FactorError::BadParams(_))
        ));
        assert!(matches!(
            TotpFactor.verify(
                SHA1_KEY,
                r#"{"algorithm":"SHA1","digits":9,"period":30}"#,
                "123456789",
                0
            ),
            Err(FactorError::BadParams(_))
        ));
    }

    #[test]
    fn params_are_validated() {
        assert!(TotpParams::new("MD5", 6, 30).is_err());
        assert!(TotpParams::new("SHA1", 5, 30).is_err());
        assert!(TotpParams::new("SHA1", 9, 30).is_err());
        assert!(TotpParams::new("SHA1", 6, 5).is_err());
        assert_eq!(
            TotpParams::new("sha-256", 0, 0).unwrap(),
            TotpParams {
                algorithm: TotpAlgorithm::Sha256,
                digits: 6,
                period: 30
            }
        );
    }

    #[test]
    fn base32_round_trips_and_matches_rfc4648() {
        assert_eq!(encode_base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(decode_base32("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(decode_base32("mzxw 6ytb-oi").unwrap(), b"foobar");
        assert!(decode_base32("MZXW1").is_err());
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_base32(&encode_base32(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn otpauth_uri_has_every_parameter_and_escapes_the_label() {
        let uri = otpauth_uri(b"foobar", &params("SHA256", 8), "stepup", "alice@host one");
        assert_eq!(
            uri,
            "otpauth://totp/stepup:alice%40host%20one?secret=MZXW6YTBOI&issuer=stepup&algorithm=SHA256&digits=8&period=30"
        );
    }
}
