//! `[auth.verify]` and `[auth.throttle]`: what password verification may cost the broker.

use serde::Deserialize;

/// `[auth.verify]`: how many argon2 verifications run at once, how many may wait, and for how
/// long. Memory for verification is `concurrency` × the largest configured hash's `m` (KiB),
/// allocated once per slot and reused, so it never grows with the number of CONNECTs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Verifications running at once (each on a blocking thread, each with its own memory).
    pub concurrency: usize,
    /// Verifications waiting for a slot, across all connections; beyond, refused at once.
    pub max_waiting: usize,
    /// Verifications waiting or running per client address (IPv6: per /64); beyond, refused
    /// at once, so one address cannot fill the queue in front of everyone else.
    pub max_per_address: usize,
    /// How long a CONNECT may wait for a slot before it is refused (the CONNECT deadline and a
    /// hang-up end the wait earlier).
    pub wait_ms: u64,
    /// The largest `m` (KiB) a configured hash may ask for; a larger one is refused at start.
    pub max_hash_memory_kib: u32,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_waiting: 64,
            max_per_address: 4,
            wait_ms: 5_000,
            max_hash_memory_kib: 256 * 1024,
        }
    }
}

/// `[auth.throttle]`: failed password logins, counted per client address and per user name
/// in windows; past a budget, further attempts are refused without verifying anything.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed password logins from one address (IPv6: one /64) per window; 0 turns it off.
    pub failures_per_address: u32,
    /// Failed password logins for one user name per window, from addresses that have not
    /// logged in as that user recently; 0 turns it off.
    pub failures_per_user: u32,
    /// The window, from the first failure counted in it.
    pub window_ms: u64,
    /// How long a successful login exempts its (user name, address) pair from the per-user
    /// budget, so an attacker guessing a name cannot lock its owner out of where they log in.
    pub trusted_ms: u64,
    /// Addresses, names and trusted pairs remembered, each; past it, new keys share one
    /// budget (memory stays bounded whatever the attacker varies).
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            failures_per_address: 10,
            failures_per_user: 10,
            window_ms: 60_000,
            trusted_ms: 7 * 24 * 3_600_000,
            max_tracked: 10_000,
        }
    }
}

/// Time cost above which a configured hash is refused: each verification would hold a slot
/// for seconds.
pub const MAX_HASH_TIME_COST: u32 = 64;
/// Lanes above which a configured hash is refused.
pub const MAX_HASH_LANES: u32 = 64;
/// Clock skew allowed on JWT `exp`/`nbf`, at most.
pub const MAX_LEEWAY_SECS: u64 = 3_600;

/// Checks `[auth.verify]`, `[auth.throttle]`, the users' hash parameters and the JWT leeway.
pub fn validate(auth: &super::AuthConfig) -> Result<(), String> {
    let v = &auth.verify;
    if v.concurrency == 0 || v.concurrency > 256 {
        return Err("auth.verify.concurrency must be between 1 and 256".into());
    }
    if v.max_waiting == 0 || v.max_per_address == 0 || v.wait_ms == 0 {
        return Err(
            "auth.verify.max_waiting, max_per_address and wait_ms must be at least 1".into(),
        );
    }
    let t = &auth.throttle;
    if t.window_ms == 0 || t.max_tracked == 0 {
        return Err("auth.throttle.window_ms and max_tracked must be at least 1".into());
    }
    if let Some(jwt) = &auth.jwt
        && jwt.leeway_secs > MAX_LEEWAY_SECS
    {
        return Err(format!(
            "auth.jwt.leeway_secs must be at most {MAX_LEEWAY_SECS}"
        ));
    }
    for u in &auth.users {
        let Ok(hash) = argon2::PasswordHash::new(&u.password_hash) else {
            return Err(format!(
                "auth.users {:?}: password_hash is not a valid argon2 hash",
                u.name
            ));
        };
        let Ok(params) = argon2::Params::try_from(&hash) else {
            return Err(format!(
                "auth.users {:?}: password_hash has invalid argon2 parameters",
                u.name
            ));
        };
        if params.m_cost() > v.max_hash_memory_kib
            || params.t_cost() > MAX_HASH_TIME_COST
            || params.p_cost() > MAX_HASH_LANES
        {
            return Err(format!(
                "auth.users {:?}: password_hash costs m={} KiB, t={}, p={}; the limits are \
                 auth.verify.max_hash_memory_kib = {}, t <= {MAX_HASH_TIME_COST}, \
                 p <= {MAX_HASH_LANES}",
                u.name,
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                v.max_hash_memory_kib
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, StaticUser};

    fn with_hash(hash: &str) -> Config {
        let mut c = Config::default();
        c.auth.users = vec![StaticUser {
            name: "u".into(),
            password_hash: hash.into(),
            roles: vec![],
        }];
        c
    }

    #[test]
    fn hashes_costing_more_than_the_limits_are_refused() {
        // Valid PHC strings (the hash bytes are never checked here), with absurd costs.
        let salt_and_hash = "c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let ok = format!("$argon2id$v=19$m=19456,t=2,p=1${salt_and_hash}");
        assert!(with_hash(&ok).validate().is_ok());
        for params in [
            "m=4194304,t=2,p=1",
            "m=19456,t=1000,p=1",
            "m=19456,t=2,p=128",
        ] {
            let phc = format!("$argon2id$v=19${params}${salt_and_hash}");
            let err = with_hash(&phc).validate().unwrap_err().to_string();
            assert!(err.contains("auth.users \"u\""), "{params}: {err}");
        }
        assert!(with_hash("not a hash").validate().is_err());
    }

    #[test]
    fn limits_must_be_usable() {
        let mut c = Config::default();
        c.auth.verify.concurrency = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.auth.throttle.window_ms = 0;
        assert!(c.validate().is_err());
    }
}
