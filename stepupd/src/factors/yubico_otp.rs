//! Yubico OTP, validated offline with the key's AES key (no YubiCloud).
//!
//! A touch on a YubiKey slot programmed for Yubico OTP types 32 to 48 modhex characters
//! (the alphabet `cbdefghijklnrtuv`, chosen because it types the same on most keyboard
//! layouts): the public id (0 to 16 characters, 12 on factory-programmed keys), then a
//! 32-character token. The token is one AES-128-ECB block encrypted with the slot's
//! secret key; decrypted it reads:
//!
//! | bytes | field |
//! |---|---|
//! | 0–5 | private id |
//! | 6–7 | usage counter, little-endian; bit 15 is the Caps Lock flag and is masked off, so the counter is 15 bits |
//! | 8–10 | timestamp, little-endian, 24 bits (an 8 Hz clock started at a random value at power-up) |
//! | 11 | session counter |
//! | 12–13 | random, little-endian |
//! | 14–15 | CRC-16 (ISO 13239, the X.25 CRC), little-endian, complemented so that the CRC of all 16 bytes leaves the residue `0xF0B8` |
//!
//! The usage counter is persistent and counts power-ups; the session counter counts
//! touches within one power-up (when it wraps past 255 the key bumps the usage counter).
//! So (usage, session) increases with every OTP the key emits, and [`Token::counter`]
//! packs the pair into one integer for the store's compare-and-set, which refuses a
//! replayed or older OTP.
//!
//! The sealed secret is the 16-byte AES key; the parameters (JSON beside it) are the
//! public id and the private id. An OTP is accepted when its public id is the enrolled
//! one, it decrypts with the key to a block whose CRC checks, and the private id inside
//! is the enrolled one (compared in constant time). Anything malformed is a rejection,
//! never a panic.
//!
//! Enrolment input comes from `ykman otp yubiotp` (which prints the key it generates) or
//! from the CSV lines described at [`parse_ykman_csv`].

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::{Factor, FactorError, Verification};
use crate::config::FactorKind;

/// The modhex alphabet: digit `i` of hexadecimal is `MODHEX_ALPHABET[i]`.
pub const MODHEX_ALPHABET: &str = "cbdefghijklnrtuv";
/// Length of the encrypted token in modhex characters (16 bytes).
pub const TOKEN_LEN: usize = 32;
/// Longest public id accepted, in modhex characters (8 bytes).
pub const MAX_PUBLIC_ID_LEN: usize = 16;
/// Shortest OTP: a token without a public id.
pub const OTP_MIN_LEN: usize = TOKEN_LEN;
/// Longest OTP: the longest public id and a token.
pub const OTP_MAX_LEN: usize = MAX_PUBLIC_ID_LEN + TOKEN_LEN;
/// AES key length in bytes.
pub const AES_KEY_LEN: usize = 16;
/// Private id length in bytes.
pub const PRIVATE_ID_LEN: usize = 6;
/// What the CRC-16 of a whole, intact 16-byte block leaves.
pub const CRC_OK_RESIDUE: u16 = 0xF0B8;
/// Bit 15 of the usage counter: set when Caps Lock was on at the touch, not part of
/// the counter.
pub const CAPS_LOCK_FLAG: u16 = 0x8000;

/// Per-factor parameters stored as JSON: the public id (modhex, may be empty) and the
/// private id (12 hex chars). Both are kept lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YubicoOtpParams {
    /// Public id as the key types it, modhex, 0 to 16 characters, even length.
    pub public_id: String,
    /// Private id, 6 bytes as 12 hex characters.
    pub private_id: String,
}

impl YubicoOtpParams {
    /// Builds checked parameters from a modhex public id (may be empty, case-insensitive)
    /// and a hex private id (12 hex digits; spaces between groups, as the Yubico
    /// Personalization Tool displays it, are ignored).
    pub fn new(public_id_modhex: &str, private_id_hex: &str) -> Result<Self, String> {
        let public_id = public_id_modhex.trim();
        if public_id.len() > MAX_PUBLIC_ID_LEN {
            return Err(format!(
                "public id must be at most {MAX_PUBLIC_ID_LEN} modhex characters, not {}",
                public_id.chars().count()
            ));
        }
        modhex_decode(public_id).map_err(|e| format!("public id: {e}"))?;
        let mut private = [0u8; PRIVATE_ID_LEN];
        decode_hex_into(private_id_hex, &mut private, "private id")?;
        Ok(YubicoOtpParams {
            public_id: public_id.to_ascii_lowercase(),
            private_id: encode_hex(&private),
        })
    }

    /// Reads parameters stored as JSON and checks them again.
    pub fn from_json(text: &str) -> Result<Self, FactorError> {
        let p: YubicoOtpParams =
            serde_json::from_str(text).map_err(|e| FactorError::BadParams(e.to_string()))?;
        YubicoOtpParams::new(&p.public_id, &p.private_id).map_err(FactorError::BadParams)
    }

    /// The JSON stored in the database.
    pub fn to_json(&self) -> String {
        // Serialising a struct of two strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The private id as bytes (an error only if the fields were edited by hand to
    /// something [`YubicoOtpParams::new`] would refuse).
    pub fn private_id_bytes(&self) -> Result<[u8; PRIVATE_ID_LEN], String> {
        let mut private = [0u8; PRIVATE_ID_LEN];
        decode_hex_into(&self.private_id, &mut private, "private id")?;
        Ok(private)
    }
}

/// A decoded, CRC-checked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Private id, which must match the enrolled one.
    pub private_id: [u8; 6],
    /// Usage counter (power-ups), 15 bits: the Caps Lock flag is masked off when decoding.
    pub usage_counter: u16,
    /// 24-bit timestamp (8 Hz, random start at power-up).
    pub timestamp: u32,
    /// Session counter (touches since power-up).
    pub session_counter: u8,
    /// Random filler.
    pub random: u16,
}

impl Token {
    /// The replay counter the store compares: usage counter then session counter, so
    /// (usage, session) must be strictly greater than the last accepted pair.
    pub fn counter(&self) -> i64 {
        ((self.usage_counter as i64) << 8) | self.session_counter as i64
    }

    /// The 16-byte plaintext block, CRC included. `usage_counter` is written as it is,
    /// so setting [`CAPS_LOCK_FLAG`] in it emulates a touch with Caps Lock on.
    pub fn to_block(&self) -> [u8; 16] {
        let mut block = [0u8; 16];
        block[..6].copy_from_slice(&self.private_id);
        block[6..8].copy_from_slice(&self.usage_counter.to_le_bytes());
        block[8..11].copy_from_slice(&self.timestamp.to_le_bytes()[..3]);
        block[11] = self.session_counter;
        block[12..14].copy_from_slice(&self.random.to_le_bytes());
        let crc = !crc16(&block[..14]);
        block[14..].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Parses a decrypted block, checking its CRC and masking the Caps Lock flag.
    pub fn from_block(block: &[u8; 16]) -> Result<Token, String> {
        if crc16(block) != CRC_OK_RESIDUE {
            return Err("token CRC does not check (wrong AES key or corrupted OTP)".into());
        }
        let mut private_id = [0u8; 6];
        private_id.copy_from_slice(&block[..6]);
        Ok(Token {
            private_id,
            usage_counter: u16::from_le_bytes([block[6], block[7]]) & !CAPS_LOCK_FLAG,
            timestamp: u32::from_le_bytes([block[8], block[9], block[10], 0]),
            session_counter: block[11],
            random: u16::from_le_bytes([block[12], block[13]]),
        })
    }
}

/// CRC-16 as Yubico computes it (ISO 13239 / X.25 without the final complement): initial
/// value `0xFFFF`, reflected polynomial `0x8408`. Over an intact block it yields
/// [`CRC_OK_RESIDUE`].
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            let carry = crc & 1;
            crc >>= 1;
            if carry != 0 {
                crc ^= 0x8408;
            }
        }
    }
    crc
}

fn modhex_value(c: char) -> Option<u8> {
    if !c.is_ascii() {
        return None;
    }
    let lower = c.to_ascii_lowercase() as u8;
    MODHEX_ALPHABET
        .bytes()
        .position(|m| m == lower)
        .map(|p| p as u8)
}

/// Decodes modhex (`cbdefghijklnrtuv`, case-insensitive, even length). Errors name the
/// offending character.
pub fn modhex_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut nibbles = Vec::with_capacity(text.len());
    for c in text.chars() {
        match modhex_value(c) {
            Some(v) => nibbles.push(v),
            None => {
                return Err(format!(
                    "not modhex: unexpected character {c:?} (modhex uses only {MODHEX_ALPHABET})"
                ));
            }
        }
    }
    if !nibbles.len().is_multiple_of(2) {
        return Err(format!(
            "modhex must have an even number of characters, not {}",
            nibbles.len()
        ));
    }
    Ok(nibbles
        .chunks_exact(2)
        .map(|p| (p[0] << 4) | p[1])
        .collect())
}

/// Encodes bytes as lower-case modhex.
pub fn modhex_encode(bytes: &[u8]) -> String {
    let alphabet = MODHEX_ALPHABET.as_bytes();
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(alphabet[usize::from(b >> 4)] as char);
        out.push(alphabet[usize::from(b & 15)] as char);
    }
    out
}

/// Splits an OTP into (public id modhex, token modhex) — the token is the last 32 chars.
/// Both come back lower-case. The OTP must be 32 to 48 modhex characters of even length.
pub fn split_otp(otp: &str) -> Result<(String, String), String> {
    if let Some(c) = otp.chars().find(|&c| modhex_value(c).is_none()) {
        return Err(format!(
            "not a Yubico OTP: unexpected character {c:?} (modhex uses only {MODHEX_ALPHABET})"
        ));
    }
    // Only ASCII from here on, so byte lengths are character counts.
    let len = otp.len();
    if !(OTP_MIN_LEN..=OTP_MAX_LEN).contains(&len) {
        return Err(format!(
            "not a Yubico OTP: {len} characters, expected {OTP_MIN_LEN} to {OTP_MAX_LEN}"
        ));
    }
    if !len.is_multiple_of(2) {
        return Err(format!(
            "not a Yubico OTP: {len} characters, expected an even number"
        ));
    }
    let lower = otp.to_ascii_lowercase();
    let (public_id, token) = lower.split_at(len - TOKEN_LEN);
    Ok((public_id.to_string(), token.to_string()))
}

fn aes_cipher(aes_key: &[u8]) -> Result<Aes128, String> {
    if aes_key.len() != AES_KEY_LEN {
        return Err(format!(
            "AES key must be {AES_KEY_LEN} bytes, not {}",
            aes_key.len()
        ));
    }
    Aes128::new_from_slice(aes_key).map_err(|_| "AES key has the wrong length".to_string())
}

/// Decrypts and CRC-checks a 32-modhex token with the AES key.
pub fn decrypt_token(aes_key: &[u8], token_modhex: &str) -> Result<Token, String> {
    let cipher = aes_cipher(aes_key)?;
    let count = token_modhex.chars().count();
    if count != TOKEN_LEN {
        return Err(format!(
            "token must be {TOKEN_LEN} modhex characters, not {count}"
        ));
    }
    let bytes = modhex_decode(token_modhex).map_err(|e| format!("token: {e}"))?;
    let mut block = aes::Block::default();
    block.copy_from_slice(&bytes);
    cipher.decrypt_block(&mut block);
    let mut plain = Zeroizing::new([0u8; 16]);
    plain.copy_from_slice(&block);
    block.as_mut_slice().zeroize();
    Token::from_block(&plain)
}

/// Encrypts a token as a YubiKey would, returning its 32 modhex characters. For
/// simulators and tests: the daemon itself never encrypts.
pub fn encrypt_token(aes_key: &[u8], token: &Token) -> Result<String, String> {
    let cipher = aes_cipher(aes_key)?;
    let mut plain = Zeroizing::new(token.to_block());
    let mut block = aes::Block::default();
    block.copy_from_slice(plain.as_slice());
    plain.zeroize();
    cipher.encrypt_block(&mut block);
    Ok(modhex_encode(&block))
}

/// Whether `answer` has the shape of a Yubico OTP (32..=48 modhex chars), so one prompt can serve TOTP and touches.
pub fn looks_like_otp(answer: &str) -> bool {
    split_otp(answer).is_ok()
}

/// Decodes exactly `out.len()` bytes of hex, ignoring ASCII whitespace anywhere. Error
/// messages give positions, never the characters, since the text may be a key.
fn decode_hex_into(text: &str, out: &mut [u8], what: &str) -> Result<(), String> {
    let mut count = 0usize;
    for (pos, c) in text.chars().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let Some(v) = c.to_digit(16) else {
            return Err(format!(
                "{what} is not hex: unexpected character at position {}",
                pos + 1
            ));
        };
        if count < out.len() * 2 {
            let byte = &mut out[count / 2];
            *byte = if count.is_multiple_of(2) {
                (v as u8) << 4
            } else {
                *byte | v as u8
            };
        }
        count += 1;
    }
    if count != out.len() * 2 {
        out.zeroize();
        return Err(format!(
            "{what} must be {} hex digits, not {count}",
            out.len() * 2
        ));
    }
    Ok(())
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the AES key as 32 hex chars (as `ykman otp yubiotp` prints it). Case is
/// ignored, and so are spaces between groups (the Personalization Tool shows the key as
/// space-separated bytes).
pub fn parse_aes_key(hex: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut key = Zeroizing::new(vec![0u8; AES_KEY_LEN]);
    decode_hex_into(hex, &mut key, "AES key")?;
    Ok(key)
}

fn csv_field(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(f)
        .trim()
}

/// Parses one line of a Yubico OTP configuration log into (public id, private id, AES
/// key), the public id lower-case modhex, the private id lower-case hex. Two layouts
/// are read, told apart by the first field:
///
/// * the "Yubico" format that `ykman otp yubiotp --config-output FILE` appends (ykman
///   5.x; `ykman.otp.format_csv`, also used by ykman's `examples/yubiotp_batch.py`):
///   `serial,public id (modhex),private id (hex),AES key (hex),access code (hex or empty),ISO timestamp,`
///   e.g. `13579246,cccccbcdcecf,0a0b0c0d0e0f,00112233445566778899aabbccddeeff,,2024-05-01T12:00:00,`.
///   The first field must be a decimal serial number (or empty). ykman 4.x (4.0.9 here)
///   writes no log at all; take the key from its output (`--generate-key` prints it).
/// * the "Traditional format" log of the Yubico Personalization Tool:
///   `Yubico OTP,<date>,<slot>,<public id (modhex)>,<private id (hex)>,<AES key (hex)>,...`.
///
/// Fields may be surrounded by spaces or double quotes; a trailing carriage return is
/// ignored. Lines for other credential types (HOTP, static, challenge-response), header
/// and comment lines are refused. Errors never quote the key.
pub fn parse_ykman_csv(line: &str) -> Result<(String, String, Zeroizing<Vec<u8>>), String> {
    let fields: Vec<&str> = line.trim().split(',').map(csv_field).collect();
    let first = fields.first().copied().unwrap_or_default();
    let (public_id, private_id, key, layout) = if first.eq_ignore_ascii_case("Yubico OTP") {
        if fields.len() < 6 {
            return Err(format!(
                "Personalization Tool log line has {} fields, expected at least 6 \
                 (Yubico OTP,date,slot,public id,private id,AES key,...)",
                fields.len()
            ));
        }
        (fields[3], fields[4], fields[5], "Personalization Tool log")
    } else if first.bytes().all(|b| b.is_ascii_digit()) {
        if fields.len() < 4 {
            return Err(format!(
                "ykman CSV line has {} fields, expected at least 4 \
                 (serial,public id,private id,AES key,access code,timestamp,)",
                fields.len()
            ));
        }
        (fields[1], fields[2], fields[3], "ykman CSV")
    } else {
        return Err(
            "not a Yubico OTP configuration line: the first field is neither a serial \
             number (ykman --config-output) nor \"Yubico OTP\" (Personalization Tool log)"
                .into(),
        );
    };
    let params =
        YubicoOtpParams::new(public_id, private_id).map_err(|e| format!("{layout}: {e}"))?;
    let key = parse_aes_key(key).map_err(|e| format!("{layout}: {e}"))?;
    Ok((params.public_id, params.private_id, key))
}

/// The Yubico OTP factor.
#[derive(Debug, Clone, Copy)]
pub struct YubicoOtpFactor;

impl Factor for YubicoOtpFactor {
    fn kind(&self) -> FactorKind {
        FactorKind::YubicoOtp
    }

    /// An OTP whose public id is the enrolled one. If the parameters are unreadable the
    /// shape alone decides, so that `verify` gets to report the broken parameters.
    fn recognises(&self, answer: &str, params: &str) -> bool {
        let Ok((public_id, _)) = split_otp(answer) else {
            return false;
        };
        match YubicoOtpParams::from_json(params) {
            Ok(p) => p.public_id == public_id,
            Err(_) => true,
        }
    }

    fn verify(
        &self,
        secret: &[u8],
        params: &str,
        answer: &str,
        _now: u64,
    ) -> Result<Verification, FactorError> {
        let params = YubicoOtpParams::from_json(params)?;
        let enrolled_private = params.private_id_bytes().map_err(FactorError::BadParams)?;
        if secret.len() != AES_KEY_LEN {
            return Err(FactorError::BadSecret(format!(
                "AES key is {} bytes, need {AES_KEY_LEN}",
                secret.len()
            )));
        }
        let Ok((public_id, token)) = split_otp(answer) else {
            return Ok(Verification::Rejected);
        };
        // The public id is public: no need for a constant-time comparison.
        if public_id != params.public_id {
            return Ok(Verification::Rejected);
        }
        let Ok(token) = decrypt_token(secret, &token) else {
            return Ok(Verification::Rejected);
        };
        if !bool::from(token.private_id.ct_eq(&enrolled_private)) {
            return Ok(Verification::Rejected);
        }
        Ok(Verification::Accepted {
            counter: token.counter(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    const KEY_HEX: &str = "00112233445566778899aabbccddeeff";
    const OTHER_KEY_HEX: &str = "ffeeddccbbaa99887766554433221100";
    const PRIVATE_HEX: &str = "0a0b0c0d0e0f";
    /// `modhex -h 0102030405ff`.
    const PUBLIC_HEX: &str = "0102030405ff";

    fn key() -> Vec<u8> {
        parse_aes_key(KEY_HEX).unwrap().to_vec()
    }

    fn params(public_id: &str, private_id: &str) -> String {
        YubicoOtpParams::new(public_id, private_id)
            .unwrap()
            .to_json()
    }

    /// Runs an oracle program, failing the test with the package to install if missing.
    fn run(program: &str, args: &[&str], package: &str) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} ({e}): apt-get install {package}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ykgenerate AESKEY UID COUNTER TSTP_LOW TSTP_HIGH USE` (libyubikey): all hex,
    /// counter and timestamp-low exactly 4 digits, timestamp-high and use exactly 2. It
    /// has no argument for the random field (it leaves it uninitialised), so callers read
    /// it back with `ykparse`.
    fn ykgenerate(key_hex: &str, uid_hex: &str, usage: u16, timestamp: u32, session: u8) -> String {
        let token = run(
            "ykgenerate",
            &[
                key_hex,
                uid_hex,
                &format!("{usage:04x}"),
                &format!("{:04x}", timestamp & 0xffff),
                &format!("{:02x}", (timestamp >> 16) & 0xff),
                &format!("{session:02x}"),
            ],
            "libyubikey-dev",
        );
        let token = token.trim().to_string();
        assert_eq!(token.len(), 32, "ykgenerate printed {token:?}");
        token
    }

    /// The fields `ykparse AESKEY TOKEN` prints.
    #[derive(Debug)]
    struct Parsed {
        uid: Vec<u8>,
        raw_counter: u16,
        cleaned_counter: u16,
        timestamp_low: u32,
        timestamp_high: u32,
        session: u8,
        random: u16,
        crc_ok: bool,
    }

    fn ykparse(key_hex: &str, token: &str) -> Parsed {
        let out = run("ykparse", &[key_hex, token], "libyubikey-dev");
        let field = |name: &str| -> String {
            out.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .unwrap_or_else(|| panic!("ykparse printed no {name:?}: {out}"))
                .trim()
                .to_string()
        };
        let number = |name: &str| -> u32 {
            let v = field(name);
            v.split_whitespace().next().unwrap().parse().unwrap()
        };
        Parsed {
            uid: field("uid")
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect(),
            raw_counter: number("counter") as u16,
            cleaned_counter: number("cleaned counter") as u16,
            timestamp_low: number("timestamp (low)"),
            timestamp_high: number("timestamp (high)"),
            session: number("session use") as u8,
            random: number("random") as u16,
            crc_ok: field("crc check") == "ok",
        }
    }

    /// `modhex -h HEX`: the modhex form of hex-encoded bytes.
    fn modhex_tool(hex: &str) -> String {
        run("modhex", &["-h", hex], "libyubikey-dev")
            .trim()
            .to_string()
    }

    /// A whole OTP as a key with public id `PUBLIC_HEX` would type it, from the oracles.
    fn oracle_otp(usage: u16, timestamp: u32, session: u8) -> String {
        format!(
            "{}{}",
            modhex_tool(PUBLIC_HEX),
            ykgenerate(KEY_HEX, PRIVATE_HEX, usage, timestamp, session)
        )
    }

    fn enrolled() -> String {
        params(&modhex_tool(PUBLIC_HEX), PRIVATE_HEX)
    }

    fn verify(secret: &[u8], params: &str, answer: &str) -> Verification {
        YubicoOtpFactor.verify(secret, params, answer, 0).unwrap()
    }

    /// Runs a yubiotp script with the first Python that has the module (Debian's
    /// /usr/bin/python3 when a pyenv python3 shadows it).
    fn python_yubiotp(script: &str, args: &[&str]) -> String {
        let mut errors = Vec::new();
        for python in ["python3", "/usr/bin/python3"] {
            match Command::new(python)
                .arg("-c")
                .arg(script)
                .args(args)
                .output()
            {
                Ok(out) if out.status.success() => {
                    return String::from_utf8(out.stdout).unwrap().trim().to_string();
                }
                Ok(out) => errors.push(format!(
                    "{python}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => errors.push(format!("{python}: {e}")),
            }
        }
        panic!(
            "no python3 with yubiotp ({}): apt-get install python3-yubiotp",
            errors.join("; ")
        );
    }

    #[test]
    fn modhex_matches_the_modhex_tool_for_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let hex = encode_hex(&all);
        let expected = modhex_tool(&hex);
        assert_eq!(modhex_encode(&all), expected);
        assert_eq!(modhex_decode(&expected).unwrap(), all);
        let back = run(
            "modhex",
            &["-d", "-h", &modhex_encode(&all)],
            "libyubikey-dev",
        );
        assert_eq!(back.trim(), hex);
    }

    #[test]
    fn modhex_decode_is_case_insensitive_and_names_bad_characters() {
        assert_eq!(modhex_decode("").unwrap(), Vec::<u8>::new());
        assert_eq!(
            modhex_decode("CBDEFGHIJKLNRTUV").unwrap(),
            modhex_decode("cbdefghijklnrtuv").unwrap()
        );
        assert_eq!(modhex_decode("vvcc").unwrap(), vec![0xff, 0x00]);
        let err = modhex_decode("cbca").unwrap_err();
        assert!(err.contains("'a'"), "{err}");
        let err = modhex_decode("cb0c").unwrap_err();
        assert!(err.contains("'0'"), "{err}");
        let err = modhex_decode("cbé").unwrap_err();
        assert!(err.contains("'é'"), "{err}");
        assert!(modhex_decode("cbc").unwrap_err().contains("even"));
    }

    #[test]
    fn crc16_leaves_the_yubico_residue_over_an_intact_block() {
        // The X.25 check value: CRC-16/IBM-SDLC of "123456789" is 0x906E, which is
        // the complement of this un-complemented register.
        assert_eq!(!crc16(b"123456789"), 0x906E);
        let token = Token {
            private_id: [1, 2, 3, 4, 5, 6],
            usage_counter: 7,
            timestamp: 0x123456,
            session_counter: 8,
            random: 0xbeef,
        };
        assert_eq!(crc16(&token.to_block()), CRC_OK_RESIDUE);
    }

    /// Every field of tokens made by libyubikey's `ykgenerate`, read back by our
    /// decrypt_token and, as a second oracle, by `ykparse`.
    #[test]
    fn ykgenerate_tokens_decrypt_to_every_field() {
        let cases: &[(&str, &str, u16, u32, u8)] = &[
            (KEY_HEX, PRIVATE_HEX, 0x0001, 0x000000, 0x00),
            (KEY_HEX, PRIVATE_HEX, 0x0123, 0x894567, 0xab),
            (KEY_HEX, PRIVATE_HEX, 0x8123, 0x894567, 0xab),
            (KEY_HEX, "000000000000", 0x0000, 0x000000, 0x00),
            (OTHER_KEY_HEX, "ffffffffffff", 0x7fff, 0xffffff, 0xff),
            (OTHER_KEY_HEX, "ffffffffffff", 0xffff, 0xffffff, 0xff),
            (OTHER_KEY_HEX, "d1e2f3a4b5c6", 0x4000, 0x010203, 0x80),
        ];
        for &(key_hex, uid_hex, usage, timestamp, session) in cases {
            let key = parse_aes_key(key_hex).unwrap();
            let token = ykgenerate(key_hex, uid_hex, usage, timestamp, session);
            let ours = decrypt_token(&key, &token).unwrap();
            let theirs = ykparse(key_hex, &token);
            let what = format!("{key_hex} {uid_hex} {usage:#x} {timestamp:#x} {session:#x}");
            assert!(theirs.crc_ok, "{what}");
            assert_eq!(encode_hex(&ours.private_id), uid_hex, "{what}");
            assert_eq!(ours.private_id.to_vec(), theirs.uid, "{what}");
            assert_eq!(ours.usage_counter, usage & 0x7fff, "{what}");
            assert_eq!(theirs.raw_counter, usage, "{what}");
            assert_eq!(ours.usage_counter, theirs.cleaned_counter, "{what}");
            assert_eq!(ours.timestamp, timestamp, "{what}");
            assert_eq!(
                ours.timestamp,
                theirs.timestamp_low | (theirs.timestamp_high << 16),
                "{what}"
            );
            assert_eq!(ours.session_counter, session, "{what}");
            assert_eq!(ours.session_counter, theirs.session, "{what}");
            assert_eq!(ours.random, theirs.random, "{what}");
            assert_eq!(
                ours.counter(),
                (i64::from(usage & 0x7fff) << 8) | i64::from(session)
            );
        }
    }

    /// Our encoder (used by simulators) writes exactly what ykgenerate writes, and
    /// ykparse reads it back.
    #[test]
    fn encrypt_token_matches_ykgenerate_byte_for_byte() {
        let key = key();
        for (usage, timestamp, session) in [(1u16, 2u32, 3u8), (0x8001, 0xfedcba, 0xff)] {
            let generated = ykgenerate(KEY_HEX, PRIVATE_HEX, usage, timestamp, session);
            let random = ykparse(KEY_HEX, &generated).random;
            let token = Token {
                private_id: [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f],
                usage_counter: usage,
                timestamp,
                session_counter: session,
                random,
            };
            let ours = encrypt_token(&key, &token).unwrap();
            assert_eq!(ours, generated);
            let parsed = ykparse(KEY_HEX, &ours);
            assert!(parsed.crc_ok);
            assert_eq!(parsed.raw_counter, usage);
            assert_eq!(parsed.session, session);
        }
        assert!(
            encrypt_token(
                &key[..15],
                &decrypt_token(&key, &ykgenerate(KEY_HEX, PRIVATE_HEX, 1, 1, 1)).unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn right_otp_is_recognised_and_accepted_with_its_counter() {
        let p = enrolled();
        let otp = oracle_otp(0x0042, 0x123456, 0x07);
        assert_eq!(otp.len(), 44);
        assert!(otp.starts_with("cbcdcecfcgvv"), "{otp}");
        assert!(looks_like_otp(&otp));
        assert!(YubicoOtpFactor.recognises(&otp, &p));
        assert_eq!(
            verify(&key(), &p, &otp),
            Verification::Accepted {
                counter: (0x42 << 8) | 0x07
            }
        );
        assert_eq!(YubicoOtpFactor.kind(), FactorKind::YubicoOtp);
    }

    /// python3-yubiotp as an independent generator. Its naming is confusing: its
    /// `session` argument is the usage counter and its `counter` the session counter.
    #[test]
    fn python_yubiotp_otps_verify() {
        const ENCODE: &str = "
import sys
from binascii import unhexlify
from yubiotp.otp import OTP, encode_otp
key, uid, usage, timestamp, session, rand, public_id = sys.argv[1:]
otp = OTP(unhexlify(uid), session=int(usage), timestamp=int(timestamp),
          counter=int(session), rand=int(rand))
sys.stdout.write(encode_otp(otp, unhexlify(key), public_id.encode()).decode())
";
        let public_id = modhex_tool(PUBLIC_HEX);
        let p = enrolled();
        for (usage, timestamp, session, random) in [
            (1u16, 0u32, 0u8, 0u16),
            (300, 0xabcdef, 17, 0x1234),
            (0x7fff, 0xffffff, 255, 0xffff),
            (0x8005, 9, 4, 2),
        ] {
            let otp = python_yubiotp(
                ENCODE,
                &[
                    KEY_HEX,
                    PRIVATE_HEX,
                    &usage.to_string(),
                    &timestamp.to_string(),
                    &session.to_string(),
                    &random.to_string(),
                    &public_id,
                ],
            );
            let (pid, token) = split_otp(&otp).unwrap();
            assert_eq!(pid, public_id);
            let t = decrypt_token(&key(), &token).unwrap();
            assert_eq!(
                t,
                Token {
                    private_id: [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f],
                    usage_counter: usage & 0x7fff,
                    timestamp,
                    session_counter: session,
                    random,
                }
            );
            assert_eq!(
                verify(&key(), &p, &otp),
                Verification::Accepted {
                    counter: (i64::from(usage & 0x7fff) << 8) | i64::from(session)
                }
            );
        }
    }

    /// And the other way: yubiotp decodes what our encoder writes.
    #[test]
    fn python_yubiotp_decodes_our_tokens() {
        const DECODE: &str = "
import sys
from binascii import unhexlify, hexlify
from yubiotp.otp import decode_otp
public_id, otp = decode_otp(sys.argv[2].encode(), unhexlify(sys.argv[1]))
# yubiotp: `session` is the usage counter, `counter` the session counter.
print(public_id.decode(), hexlify(otp.uid).decode(), otp.session, otp.timestamp, otp.counter, otp.rand)
";
        let token = Token {
            private_id: [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f],
            usage_counter: 513,
            timestamp: 0x00abcd,
            session_counter: 9,
            random: 4242,
        };
        let otp = format!("vvcc{}", encrypt_token(&key(), &token).unwrap());
        let out = python_yubiotp(DECODE, &[KEY_HEX, &otp]);
        assert_eq!(out, format!("vvcc 0a0b0c0d0e0f 513 {} 9 4242", 0xabcd));
    }

    #[test]
    fn counters_order_usage_then_session_with_rollover_and_caps_lock_masked() {
        let p = enrolled();
        // A key's life: touches within a power-up, the session counter wrapping into
        // the next usage value, more power-ups, up to the largest 15-bit usage counter.
        let life: &[(u16, u8)] = &[
            (0, 1),
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 254),
            (1, 255),
            (2, 0),
            (2, 1),
            (3, 0),
            (0x00ff, 0x00),
            (0x0100, 0x00),
            (0x7ffe, 0xff),
            (0x7fff, 0x00),
            (0x7fff, 0xff),
        ];
        let mut last = i64::MIN;
        for &(usage, session) in life {
            let plain = oracle_otp(usage, 0x001000, session);
            let Verification::Accepted { counter } = verify(&key(), &p, &plain) else {
                panic!("({usage}, {session}) rejected");
            };
            assert!(
                counter > last,
                "({usage}, {session}) -> {counter} not above {last}"
            );
            last = counter;
            // The same touch with Caps Lock on gives the same counter (a replay).
            let caps = oracle_otp(usage | CAPS_LOCK_FLAG, 0x001000, session);
            assert_ne!(caps, plain);
            assert_eq!(
                verify(&key(), &p, &caps),
                Verification::Accepted { counter }
            );
        }
        assert_eq!(last, 0x007f_ffff);
    }

    #[test]
    fn wrong_aes_key_is_rejected() {
        let p = enrolled();
        let otp = oracle_otp(5, 6, 7);
        let other = parse_aes_key(OTHER_KEY_HEX).unwrap();
        assert_eq!(verify(&other, &p, &otp), Verification::Rejected);
        let (_, token) = split_otp(&otp).unwrap();
        assert!(decrypt_token(&other, &token).unwrap_err().contains("CRC"));
    }

    #[test]
    fn wrong_private_id_is_rejected() {
        let otp = oracle_otp(5, 6, 7);
        let public_id = modhex_tool(PUBLIC_HEX);
        for private in ["0a0b0c0d0e0e", "8a0b0c0d0e0f", "000000000000"] {
            assert_eq!(
                verify(&key(), &params(&public_id, private), &otp),
                Verification::Rejected,
                "{private}"
            );
        }
        assert_eq!(
            verify(&key(), &params(&public_id, "0A0B0C0D0E0F"), &otp),
            Verification::Accepted {
                counter: (5 << 8) | 7
            }
        );
    }

    #[test]
    fn another_public_id_is_not_recognised_and_is_rejected() {
        let token = ykgenerate(KEY_HEX, PRIVATE_HEX, 5, 6, 7);
        let p = enrolled();
        for public_id in [
            modhex_tool("0102030405fe"),
            "cccccccccccc".into(),
            "vv".into(),
            String::new(),
        ] {
            let otp = format!("{public_id}{token}");
            assert!(looks_like_otp(&otp), "{otp}");
            assert!(!YubicoOtpFactor.recognises(&otp, &p), "{otp}");
            assert_eq!(verify(&key(), &p, &otp), Verification::Rejected, "{otp}");
        }
    }

    /// A block whose CRC fails, built by decrypting a real token with the aes crate,
    /// flipping one bit and encrypting again (without fixing the CRC).
    #[test]
    fn bad_crc_is_rejected() {
        let p = enrolled();
        let public_id = modhex_tool(PUBLIC_HEX);
        let token = ykgenerate(KEY_HEX, PRIVATE_HEX, 5, 6, 7);
        let cipher = Aes128::new_from_slice(&key()).unwrap();
        let bytes = run("modhex", &["-d", "-h", &token], "libyubikey-dev");
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&bytes.trim()[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        for (byte, bit) in [
            (0usize, 0u8),
            (3, 7),
            (6, 0),
            (11, 4),
            (13, 1),
            (14, 0),
            (15, 7),
        ] {
            let mut block = aes::Block::clone_from_slice(&bytes);
            cipher.decrypt_block(&mut block);
            assert_eq!(crc16(&block), CRC_OK_RESIDUE);
            block[byte] ^= 1 << bit;
            cipher.encrypt_block(&mut block);
            let bad = modhex_encode(&block);
            let err = decrypt_token(&key(), &bad).unwrap_err();
            assert!(err.contains("CRC"), "{err}");
            assert_eq!(
                verify(&key(), &p, &format!("{public_id}{bad}")),
                Verification::Rejected,
                "byte {byte} bit {bit}"
            );
        }
    }

    #[test]
    fn malformed_answers_are_rejected_never_a_panic() {
        let p = enrolled();
        let good = oracle_otp(5, 6, 7);
        let long_public = format!("{}{}", "vv".repeat(9), &good[12..]);
        let cases = [
            String::new(),
            good[..good.len() - 1].to_string(),
            good[..43 - 12].to_string(),
            good[12..good.len() - 2].to_string(),
            format!("{good}c"),
            format!("{good}cc"),
            format!("cccc{good}"),
            long_public,
            good.replacen('c', "a", 1),
            good.replacen('c', "0", 1),
            good.replacen('c', "é", 1),
            good.replacen('c', "ć", 1),
            format!(" {good}"),
            format!("{good}\n"),
            "123456".to_string(),
            "c".repeat(1000),
        ];
        for answer in &cases {
            assert!(
                !looks_like_otp(answer) || !YubicoOtpFactor.recognises(answer, &p),
                "{answer:?}"
            );
            assert_eq!(
                verify(&key(), &p, answer),
                Verification::Rejected,
                "{answer:?}"
            );
        }
        assert!(
            split_otp(&good.replacen('c', "a", 1))
                .unwrap_err()
                .contains("'a'")
        );
        assert!(
            split_otp(&good.replacen('c', "0", 1))
                .unwrap_err()
                .contains("'0'")
        );
        assert!(decrypt_token(&key(), &good[12..43]).is_err());
        assert!(decrypt_token(&key(), &good).is_err());
        // The token is random: replace a position, not a letter it may not contain.
        assert!(decrypt_token(&key(), &format!("é{}", &good[13..])).is_err());
    }

    #[test]
    fn uppercase_otp_is_accepted() {
        let p = enrolled();
        let otp = oracle_otp(9, 10, 11);
        let upper = otp.to_ascii_uppercase();
        assert!(YubicoOtpFactor.recognises(&upper, &p));
        assert_eq!(
            verify(&key(), &p, &upper),
            Verification::Accepted {
                counter: (9 << 8) | 11
            }
        );
        // An enrolment typed in capitals is the same enrolment.
        let upper_params = params(&modhex_tool(PUBLIC_HEX).to_ascii_uppercase(), PRIVATE_HEX);
        assert_eq!(upper_params, p);
    }

    #[test]
    fn empty_public_id_enrolment_takes_bare_tokens_only() {
        let p = params("", PRIVATE_HEX);
        let token = ykgenerate(KEY_HEX, PRIVATE_HEX, 3, 4, 5);
        assert!(YubicoOtpFactor.recognises(&token, &p));
        assert_eq!(
            verify(&key(), &p, &token),
            Verification::Accepted {
                counter: (3 << 8) | 5
            }
        );
        assert_eq!(split_otp(&token).unwrap(), (String::new(), token.clone()));
        let prefixed = format!("{}{token}", modhex_tool(PUBLIC_HEX));
        assert!(!YubicoOtpFactor.recognises(&prefixed, &p));
        assert_eq!(verify(&key(), &p, &prefixed), Verification::Rejected);
    }

    #[test]
    fn wrong_size_secret_and_bad_params_are_errors_not_rejections() {
        let p = enrolled();
        let otp = oracle_otp(1, 1, 1);
        for len in [0usize, 15, 17, 32] {
            assert!(
                matches!(
                    YubicoOtpFactor.verify(&vec![0u8; len], &p, &otp, 0),
                    Err(FactorError::BadSecret(_))
                ),
                "{len}"
            );
        }
        for bad in [
            "",
            "{}",
            r#"{"public_id":"cbcdcecfcgvv"}"#,
            r#"{"public_id":"cbcdcecfcgva","private_id":"0a0b0c0d0e0f"}"#,
            r#"{"public_id":"cbcdcecfcgvv","private_id":"0a0b0c0d0e0g"}"#,
            r#"{"public_id":"cbcdcecfcgvv","private_id":"0a0b0c0d0e"}"#,
        ] {
            assert!(
                matches!(
                    YubicoOtpFactor.verify(&key(), bad, &otp, 0),
                    Err(FactorError::BadParams(_))
                ),
                "{bad}"
            );
            // Unreadable parameters: the shape decides, so verify can report them.
            assert!(YubicoOtpFactor.recognises(&otp, bad), "{bad}");
            assert!(!YubicoOtpFactor.recognises("123456", bad), "{bad}");
        }
    }

    #[test]
    fn params_are_validated_and_round_trip_through_json() {
        let p = YubicoOtpParams::new(" CBCDcecfcgvv ", "0A 0B 0C 0D 0E 0F").unwrap();
        assert_eq!(
            p,
            YubicoOtpParams {
                public_id: "cbcdcecfcgvv".into(),
                private_id: "0a0b0c0d0e0f".into()
            }
        );
        assert_eq!(
            p.to_json(),
            r#"{"public_id":"cbcdcecfcgvv","private_id":"0a0b0c0d0e0f"}"#
        );
        assert_eq!(YubicoOtpParams::from_json(&p.to_json()).unwrap(), p);
        assert_eq!(p.private_id_bytes().unwrap(), [10, 11, 12, 13, 14, 15]);
        assert!(YubicoOtpParams::new("", PRIVATE_HEX).is_ok());
        assert!(YubicoOtpParams::new(&"v".repeat(16), PRIVATE_HEX).is_ok());
        assert!(YubicoOtpParams::new(&"v".repeat(18), PRIVATE_HEX).is_err());
        assert!(YubicoOtpParams::new("vvc", PRIVATE_HEX).is_err());
        assert!(
            YubicoOtpParams::new("vvca", PRIVATE_HEX)
                .unwrap_err()
                .contains("'a'")
        );
        assert!(YubicoOtpParams::new("vv", "0a0b0c0d0e").is_err());
        assert!(YubicoOtpParams::new("vv", "0a0b0c0d0e0f00").is_err());
        assert!(YubicoOtpParams::new("vv", "0a0b0c0d0e0x").is_err());
    }

    #[test]
    fn aes_keys_parse_from_hex_only_at_the_right_length() {
        let k = parse_aes_key(KEY_HEX).unwrap();
        assert_eq!(encode_hex(&k), KEY_HEX);
        assert_eq!(parse_aes_key(&KEY_HEX.to_ascii_uppercase()).unwrap(), k);
        assert_eq!(
            parse_aes_key(" 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff\n").unwrap(),
            k
        );
        for bad in [
            "",
            &KEY_HEX[..30],
            &KEY_HEX[..31],
            &format!("{KEY_HEX}00"),
            &KEY_HEX.replace('f', "g"),
            "0x00112233445566778899aabbccddee",
        ] {
            let err = parse_aes_key(bad).unwrap_err();
            assert!(!err.contains("aabb"), "error quotes the key: {err}");
        }
        assert!(
            parse_aes_key(&KEY_HEX.replace('f', "g"))
                .unwrap_err()
                .contains("position")
        );
    }

    /// Lines in the layout `ykman.otp.format_csv` writes for `ykman otp yubiotp
    /// --config-output` (ykman 5.x; the ykman 4.0.9 installed here has no such option,
    /// and writing one needs a key attached), and in the Personalization Tool's
    /// "Traditional format" log. The public id comes from the `modhex` tool.
    #[test]
    fn ykman_and_personalization_tool_lines_parse() {
        let public_id = modhex_tool(PUBLIC_HEX);
        let ykman_lines = [
            format!("13579246,{public_id},{PRIVATE_HEX},{KEY_HEX},,2024-05-01T12:00:00,"),
            format!(
                "13579246,{public_id},{PRIVATE_HEX},{KEY_HEX},010203040506,2024-05-01T12:00:00,\r\n"
            ),
            format!(
                "13579246, \"{public_id}\" ,{},{},,2024-05-01T12:00:00,",
                PRIVATE_HEX.to_uppercase(),
                KEY_HEX.to_uppercase()
            ),
            format!(
                "Yubico OTP,12/04/12 11:31,1,{public_id},{PRIVATE_HEX},{KEY_HEX},,,0,0,0,0,0,0,0,0,0,0"
            ),
        ];
        let otp = oracle_otp(0x0101, 0x020304, 0x05);
        for line in &ykman_lines {
            let (pid, private, key) =
                parse_ykman_csv(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(pid, public_id, "{line:?}");
            assert_eq!(private, PRIVATE_HEX, "{line:?}");
            assert_eq!(encode_hex(&key), KEY_HEX, "{line:?}");
            // What enrolment would store verifies a real OTP.
            let p = params(&pid, &private);
            assert_eq!(
                verify(&key, &p, &otp),
                Verification::Accepted {
                    counter: 0x0001_0105
                }
            );
        }
        let (pid, _, _) =
            parse_ykman_csv(&format!(",,{PRIVATE_HEX},{KEY_HEX},,2024-05-01T12:00:00,")).unwrap();
        assert_eq!(pid, "");
        for bad in [
            String::new(),
            "# comment".to_string(),
            "serial,public_id,private_id,key,access_code,timestamp,".to_string(),
            format!("13579246,{public_id},{PRIVATE_HEX}"),
            format!(
                "13579246,{public_id},{PRIVATE_HEX},{},,2024-05-01T12:00:00,",
                &KEY_HEX[..30]
            ),
            format!("13579246,{public_id}a,{PRIVATE_HEX},{KEY_HEX},,2024-05-01T12:00:00,"),
            format!(
                "13579246,{public_id},{},{KEY_HEX},,2024-05-01T12:00:00,",
                &PRIVATE_HEX[..10]
            ),
            format!("Yubico OTP,12/04/12 11:31,1,{public_id},{PRIVATE_HEX}"),
            format!("OATH-HOTP,12/04/12 11:31,1,{public_id},{PRIVATE_HEX},{KEY_HEX},,,0"),
            format!("Static Password,12/04/12 11:31,1,{public_id},{PRIVATE_HEX},{KEY_HEX},,,0"),
        ] {
            let err = parse_ykman_csv(&bad).unwrap_err();
            assert!(!err.contains(&KEY_HEX[..16]), "error quotes the key: {err}");
        }
    }

    proptest! {
        #[test]
        fn modhex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = modhex_encode(&bytes);
            prop_assert_eq!(text.len(), bytes.len() * 2);
            prop_assert_eq!(&modhex_decode(&text).unwrap(), &bytes);
            prop_assert_eq!(&modhex_decode(&text.to_ascii_uppercase()).unwrap(), &bytes);
        }

        #[test]
        fn tokens_round_trip_and_counters_order_like_their_pairs(
            private_id in any::<[u8; 6]>(),
            u1 in 0u16..0x8000, s1 in any::<u8>(),
            u2 in 0u16..0x8000, s2 in any::<u8>(),
            timestamp in 0u32..0x0100_0000, random in any::<u16>(), caps in any::<bool>(),
        ) {
            let key = key();
            let t = Token { private_id, usage_counter: u1, timestamp, session_counter: s1, random };
            let flagged = Token { usage_counter: if caps { u1 | CAPS_LOCK_FLAG } else { u1 }, ..t.clone() };
            let back = decrypt_token(&key, &encrypt_token(&key, &flagged).unwrap()).unwrap();
            prop_assert_eq!(&back, &t);
            let t2 = Token { usage_counter: u2, session_counter: s2, ..t.clone() };
            prop_assert_eq!(t.counter().cmp(&t2.counter()), (u1, s1).cmp(&(u2, s2)));
        }

        #[test]
        fn arbitrary_answers_never_panic(answer in "\\PC{0,60}", modhexish in "[cbdefghijklnrtuvCBDEFGHIJKLNRTUVa0 ]{0,60}") {
            let p = enrolled_static();
            for a in [&answer, &modhexish] {
                let _ = YubicoOtpFactor.recognises(a, &p);
                let v = YubicoOtpFactor.verify(&key(), &p, a, 0).unwrap();
                // Random text decrypting to a valid block with the right private id is
                // a 2^-64 event.
                prop_assert_eq!(v, Verification::Rejected);
                let _ = split_otp(a);
                let _ = modhex_decode(a);
                let _ = decrypt_token(&key(), a);
                let _ = parse_ykman_csv(a);
                let _ = parse_aes_key(a);
            }
        }
    }

    /// Enrolled parameters without running the modhex tool (for property tests).
    fn enrolled_static() -> String {
        params("cbcdcecfcgvv", PRIVATE_HEX)
    }

    #[test]
    fn enrolled_static_matches_the_modhex_tool() {
        assert_eq!(enrolled_static(), enrolled());
    }
}
