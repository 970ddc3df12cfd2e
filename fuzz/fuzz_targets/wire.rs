//! The D-Bus wire: message bodies decoded with zbus's serialized-data API into the
//! contract's types. The daemon decodes what any root client (or the PAM module)
//! sends; the module decodes what whoever holds the socket replies.
//!
//! Checks: decoding arbitrary bytes, in either byte order and at any starting offset
//! (alignment is relative to the message start), never panics nor reads past the
//! input (but for zbus's unchecked string terminator, see `round_trip`); a value that
//! decodes encodes again, and that encoding decodes to an equal value.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use stepup_proto::{
    Decision, EvaluateRequest, ExplainRequest, Explanation, FactorInfo, GrantInfo, RespondResult,
    Status, TotpEnrolment, TotpParams, YubicoOtpCredential,
};
use zbus::wire::serialized::{Context, Data};
use zbus::wire::{BE, LE, Type, to_bytes};

fn round_trip<T>(bytes: &[u8], ctxt: Context)
where
    T: DeserializeOwned + Serialize + Type + PartialEq + Debug,
{
    let data = Data::new(bytes, ctxt);
    let Ok((value, used)) = data.deserialize::<T>() else {
        return;
    };
    // zbus 6.2.1 steps over the NUL that ends a string without looking at it (present
    // or not, zero or not), so the count can pass the end by that one byte; it never
    // reads the byte, and the string itself is exactly the length-prefixed bytes.
    assert!(
        used <= bytes.len() + 1,
        "read {used} of {} bytes",
        bytes.len()
    );
    let encoded = to_bytes(ctxt, &value).expect("a decoded value encodes");
    let (again, _) = encoded
        .deserialize::<T>()
        .expect("an encoded value decodes");
    assert_eq!(again, value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let ctxt = Context::new(
        if selector & 0x80 == 0 { LE } else { BE },
        usize::from(selector >> 4 & 7),
    );
    // One type per input, so the fuzzer learns each layout's own paths.
    match selector & 0x0f {
        0 => round_trip::<EvaluateRequest>(body, ctxt),
        1 => round_trip::<Decision>(body, ctxt),
        2 => round_trip::<RespondResult>(body, ctxt),
        3 => round_trip::<(String, String)>(body, ctxt), // Respond(challenge_id, answer)
        4 => round_trip::<ExplainRequest>(body, ctxt),
        5 => round_trip::<Explanation>(body, ctxt),
        6 => round_trip::<(String, TotpParams)>(body, ctxt), // EnrollTotpBegin
        7 => round_trip::<(String, YubicoOtpCredential)>(body, ctxt),
        8 => round_trip::<TotpEnrolment>(body, ctxt),
        9 => round_trip::<Vec<FactorInfo>>(body, ctxt),
        10 => round_trip::<Status>(body, ctxt),
        11 => round_trip::<Vec<GrantInfo>>(body, ctxt),
        12 => round_trip::<Vec<String>>(body, ctxt), // Decision.factors alone
        13 => round_trip::<(String, u32, String, String)>(body, ctxt), // EnrollPiv
        _ => round_trip::<String>(body, ctxt),
    }
});
