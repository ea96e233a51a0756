//! The time claims of a JWT that `jsonwebtoken` leaves to us: `exp` as any JSON number.
//!
//! `jsonwebtoken` checks `exp` (and `nbf`) at CONNECT after rounding it to whole seconds, and
//! refuses values it cannot hold in a `u64`. The connection's own deadline comes from here,
//! from the exact value, so a fraction is honoured during the connection too, and nothing a
//! token says can overflow the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::AuthError;

/// The latest `exp` accepted: 9999-12-31T23:59:59Z. Later values (up to 1e308, or u64::MAX)
/// are refused as malformed rather than overflowing the clock.
const MAX_EXP_SECS: f64 = 253_402_300_799.0;

/// When a token stops being valid: its `exp` (any JSON number, fractions kept) plus the
/// leeway. Refused: a missing or non-numeric `exp`, a negative, non-finite or later than
/// `MAX_EXP_SECS` one, and one already past at `now`.
pub(super) fn expiry(
    exp: Option<&serde_json::Value>,
    leeway: Duration,
    now: SystemTime,
) -> Result<SystemTime, AuthError> {
    let secs = exp
        .and_then(serde_json::Value::as_f64)
        .filter(|s| s.is_finite() && (0.0..=MAX_EXP_SECS).contains(s))
        .ok_or(AuthError::Failed)?;
    let at = Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
        .and_then(|t| t.checked_add(leeway))
        .ok_or(AuthError::Failed)?;
    if at <= now {
        return Err(AuthError::Failed);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_takes_every_json_number_without_panicking() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let no_leeway = Duration::ZERO;
        let at = |v: serde_json::Value| expiry(Some(&v), no_leeway, now);
        assert_eq!(
            at(json!(1_000_001.5)),
            Ok(UNIX_EPOCH + Duration::from_millis(1_000_001_500))
        );
        assert_eq!(at(json!(1_000_000)), Err(AuthError::Failed), "exp == now");
        assert_eq!(at(json!(999_999.9)), Err(AuthError::Failed));
        for bad in [
            json!(-1),
            json!(0),
            json!(-1.5e300),
            json!(1e300),
            json!(u64::MAX),
            json!(i64::MAX),
            json!(253_402_300_800_u64),
            json!("2000000000"),
            json!(null),
        ] {
            assert_eq!(at(bad.clone()), Err(AuthError::Failed), "{bad}");
        }
        assert!(at(json!(253_402_300_799_u64)).is_ok(), "year 9999 is fine");
        assert_eq!(expiry(None, no_leeway, now), Err(AuthError::Failed));
        let leeway = Duration::from_secs(5);
        assert_eq!(
            expiry(Some(&json!(999_998)), leeway, now),
            Ok(UNIX_EPOCH + Duration::from_secs(1_000_003)),
            "the leeway extends a token accepted within it"
        );
    }
}
