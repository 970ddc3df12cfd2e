//! Factors: the ways a user can prove presence. (PIV is the one factor that is not
//! pure: its "answer" is a touch on a key this host talks to.)
//!
//! Every factor implements [`Factor`], so adding one (Yubico OTP, PIV, FIDO) touches
//! neither the PAM module nor the policy engine. A factor is pure: it gets the
//! decrypted secret, its parameters and the user's answer, and says whether the answer
//! is right and which counter it used. Persisting that counter (compare-and-set, so a
//! code is accepted once) is the store's job.

pub mod piv;
pub mod totp;
pub mod yubico_otp;

use crate::config::FactorKind;

/// The result of checking an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Right answer. `counter` must be strictly greater than the last accepted one
    /// for the factor, or the answer is a replay.
    Accepted {
        /// TOTP: the time step of the code.
        counter: i64,
    },
    /// Wrong answer.
    Rejected,
}

/// Why a factor could not check an answer at all (as opposed to a wrong answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactorError {
    /// The stored parameters are unreadable; re-enrol the factor.
    #[error("stored parameters are invalid: {0}")]
    BadParams(String),
    /// The stored secret is unusable; re-enrol the factor.
    #[error("stored secret is invalid: {0}")]
    BadSecret(String),
    /// A device the factor needs did not answer (a PIV key absent, not touched).
    #[error("{0}")]
    Device(String),
}

/// One kind of factor.
pub trait Factor: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> FactorKind;

    /// Whether `answer` has this factor's shape (e.g. 6–8 digits for TOTP), so one
    /// prompt can serve several factors.
    fn recognises(&self, answer: &str, params: &str) -> bool;

    /// Checks `answer` against the enrolled secret at `now` (Unix seconds).
    fn verify(
        &self,
        secret: &[u8],
        params: &str,
        answer: &str,
        now: u64,
    ) -> Result<Verification, FactorError>;
}

/// The factor implementation for a kind.
pub fn for_kind(kind: FactorKind) -> &'static dyn Factor {
    match kind {
        FactorKind::Totp => &totp::TotpFactor,
        FactorKind::YubicoOtp => &yubico_otp::YubicoOtpFactor,
        FactorKind::Piv => &piv::PivFactor,
    }
}
