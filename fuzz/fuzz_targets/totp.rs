//! TOTP: the code a user types at the prompt, a base32 secret an admin pastes at
//! enrolment, and the parameters JSON stored beside the sealed secret.
//!
//! Checks: never a panic; base32 that decodes re-encodes to text that decodes to the
//! same bytes; parameters that parse lie in range and survive a JSON round trip; an
//! algorithm name that parses parses again from its canonical spelling; the factor
//! recognises exactly 6-8 digit answers of the enrolled length, accepts an answer only
//! if it is the code of a step within one of now, and always accepts the current code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stepupd::factors::totp::{
    SKEW_STEPS, TotpAlgorithm, TotpFactor, TotpParams, code_at_step, decode_base32, encode_base32,
};
use stepupd::factors::{Factor, Verification};

/// RFC 6238's SHA-1 test key.
const SECRET: &[u8] = b"12345678901234567890";

/// One field per line: base32 secret, algorithm, digits, period, parameters JSON,
/// answer, Unix time.
struct Input<'a> {
    base32: &'a str,
    algorithm: &'a str,
    digits: u32,
    period: u32,
    params_json: &'a str,
    answer: &'a str,
    now: u64,
}

fn fields(text: &str) -> Input<'_> {
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or_default();
    Input {
        base32: next(),
        algorithm: next(),
        digits: next().parse().unwrap_or(0),
        period: next().parse().unwrap_or(0),
        params_json: next(),
        answer: next(),
        now: next().parse().unwrap_or(1_700_000_000),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = fields(text);
    if let Ok(bytes) = decode_base32(input.base32) {
        let text = encode_base32(&bytes);
        assert_eq!(decode_base32(&text).as_ref(), Ok(&bytes), "{text:?}");
        let significant = input
            .base32
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '='))
            .count();
        assert_eq!(bytes.len(), significant * 5 / 8);
    }

    if let Ok(alg) = TotpAlgorithm::parse(input.algorithm) {
        assert_eq!(TotpAlgorithm::parse(alg.as_str()), Ok(alg));
    }

    let built = TotpParams::new(input.algorithm, input.digits, input.period);
    if let Ok(p) = built {
        in_range(&p);
    }
    let stored = TotpParams::from_json(input.params_json);
    if let Ok(p) = stored {
        in_range(&p);
        assert_eq!(TotpParams::from_json(&p.to_json()), Ok(p));
    }

    let params = stored.or(built.map_err(|_| ())).unwrap_or_default();
    let json = params.to_json();
    let factor = TotpFactor;
    // The daemon's clock, not the input, gives `now`: keep it before the year 3000.
    let now = input.now % 32_503_680_000;
    let answer = input.answer;
    let recognised = factor.recognises(answer, &json);
    assert_eq!(
        recognised,
        answer.len() == usize::from(params.digits) && answer.bytes().all(|b| b.is_ascii_digit())
    );
    let current = now / u64::from(params.period);
    match factor
        .verify(SECRET, &json, answer, now)
        .expect("valid enrolment")
    {
        Verification::Accepted { counter } => {
            assert!(recognised);
            assert!((counter - current as i64).abs() <= SKEW_STEPS);
            assert_eq!(code_at_step(SECRET, &params, counter as u64), answer);
        }
        Verification::Rejected => {
            assert_ne!(
                code_at_step(SECRET, &params, current),
                answer,
                "current code refused"
            );
        }
    }
    let code = code_at_step(SECRET, &params, current);
    assert_eq!(code.len(), usize::from(params.digits));
    // The latest matching step wins, so a code that repeats next step counts as that.
    match factor.verify(SECRET, &json, &code, now) {
        Ok(Verification::Accepted { counter }) => {
            assert!(counter == current as i64 || counter == current as i64 + 1);
        }
        other => panic!("the current code {code:?} gave {other:?}"),
    }
});

fn in_range(p: &TotpParams) {
    assert!((6..=8).contains(&p.digits));
    assert!((10..=300).contains(&p.period));
}
