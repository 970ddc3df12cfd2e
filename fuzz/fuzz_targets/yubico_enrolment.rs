//! What an admin feeds `stepupctl factors enroll-yubico-otp`: a line of `ykman
//! --config-output` CSV or of the Personalization Tool's log, an AES key in hex, and
//! the parameters JSON the daemon later reads back from its database.
//!
//! Checks: never a panic; an accepted line gives a modhex public id of at most 16
//! characters, a private id of 12 lower-case hex digits and a 16-byte key, and
//! building parameters from those again gives the same; parameters that read from
//! JSON write back to JSON that reads to the same parameters; an accepted AES key is
//! 16 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::factors::yubico_otp::{
    AES_KEY_LEN, MAX_PUBLIC_ID_LEN, YubicoOtpParams, modhex_decode, parse_aes_key, parse_ykman_csv,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok((public_id, private_id, key)) = parse_ykman_csv(text) {
        assert!(public_id.len() <= MAX_PUBLIC_ID_LEN);
        assert!(modhex_decode(&public_id).is_ok());
        assert_eq!(public_id, public_id.to_ascii_lowercase());
        assert_eq!(private_id.len(), 12);
        assert!(
            private_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(key.len(), AES_KEY_LEN);
        let params = YubicoOtpParams::new(&public_id, &private_id).expect("accepted once");
        assert_eq!(
            (params.public_id, params.private_id),
            (public_id, private_id)
        );
    }

    if let Ok(key) = parse_aes_key(text) {
        assert_eq!(key.len(), AES_KEY_LEN);
    }

    if let Ok(params) = YubicoOtpParams::from_json(text) {
        let json = params.to_json();
        assert_eq!(YubicoOtpParams::from_json(&json).as_ref(), Ok(&params));
        assert!(params.private_id_bytes().is_ok());
    }

    // The two fields alone, split where a CSV would split them.
    if let Some((public_id, private_id)) = text.split_once(',')
        && let Ok(params) = YubicoOtpParams::new(public_id, private_id)
    {
        assert!(params.public_id.len() <= MAX_PUBLIC_ID_LEN);
        assert_eq!(params.private_id.len(), 12);
        assert_eq!(
            YubicoOtpParams::new(&params.public_id, &params.private_id).as_ref(),
            Ok(&params)
        );
    }
});
