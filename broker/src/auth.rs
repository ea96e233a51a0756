//! Authentication: who a connection is.
//!
//! Credentials, in the order they are looked for: a JWT in the CONNECT `Authorization: Bearer`
//! header; `login` + `passcode` of a static user; a JWT as the CONNECT `passcode`; a JWT in the
//! WebSocket handshake's `Authorization` header or `access_token` query parameter (browsers
//! cannot set handshake headers, mobile clients often do). A connection that presents
//! credentials which fail is refused, never downgraded to anonymous. Failures all read
//! "authentication failed": nothing tells which part was wrong.
//!
//! Cost: only a login + passcode that the static users could accept is hashed (argon2, in
//! `password`), and only while its address and user name are within their failure budgets
//! (`throttle`). A CONNECT no configured store could accept (a login + passcode with no
//! `[[auth.users]]`, a token with no `[auth.jwt]`, no credentials) costs no hash. Within a
//! users store, an unknown login is hashed against a decoy with the users' parameters, so
//! response times do not tell which logins exist.

mod claims;
mod password;
mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus_client::metrics::counter::Counter;
use stomp_codec::Headers;

use crate::config::{AuthConfig, JwtConfig, UnverifiableCredentials};
use claims::expiry;
use password::{StoredHash, Verifier};
use throttle::{AddrKey, Throttle};

/// Who a connection is, once authenticated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user name; `None` for an anonymous connection.
    pub user: Option<String>,
    /// Roles, for authorization.
    pub roles: Vec<String>,
    /// A token's string claims (and the strings of its array claims), for `claim:` rules.
    pub claims: Vec<(String, String)>,
    /// When the credential (a token) stops being valid.
    pub expires_at: Option<SystemTime>,
}

/// Credentials carried by the WebSocket handshake rather than by CONNECT.
#[derive(Clone, Debug, Default)]
pub struct HandshakeAuth {
    /// The `Authorization` header of the upgrade request.
    pub authorization: Option<String>,
    /// The `access_token` query parameter.
    pub access_token: Option<String>,
}

/// Authentication failed. Deliberately says nothing more to the client, whichever it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credentials were checked and refused, or none were acceptable.
    #[error("authentication failed")]
    Failed,
    /// Refused without checking: the address or user name is over its failure budget, or
    /// password verification is busy (queue full, the address's share taken, wait too long).
    #[error("authentication failed")]
    Throttled,
}

/// Why the authentication settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A static user's hash is not an argon2 PHC string.
    #[error("auth.users {0:?}: password_hash is not a valid argon2 hash")]
    BadHash(String),
    /// The HS256 secret (variable or file) is missing or empty.
    #[error("auth.jwt: the HS256 secret {0} is not set or empty")]
    MissingSecret(String),
    /// The public key file cannot be read or parsed.
    #[error("auth.jwt: public key {0}: {1}")]
    BadKey(String, String),
}

struct StaticEntry {
    hash: Arc<StoredHash>,
    roles: Vec<String>,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    leeway: Duration,
    user_claim: String,
    roles_claim: Option<String>,
}

/// Checks credentials. Built once at start-up.
pub struct Authenticator {
    allow_anonymous: bool,
    /// No credential store and anonymous access allowed: credentials cannot be verified, so
    /// they are not looked at and every connection is anonymous (as Spring's simple broker).
    /// Stock clients send `login`/`passcode` (stomp.js's example, guest/guest) by default.
    ignore_credentials: bool,
    users: HashMap<String, StaticEntry>,
    /// Verified when the login is unknown, so an unknown login costs the same time as a wrong
    /// passcode; `None` without static users (then no login is ever hashed).
    decoy: Option<Arc<StoredHash>>,
    jwt: Option<Jwt>,
    /// Argon2 is deliberately expensive: bounded slots, queue and memory.
    verifier: Verifier,
    throttle: Arc<Throttle>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("users", &self.users.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// Hashes a password for `[[auth.users]] password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

impl Authenticator {
    /// Loads users, secrets and keys.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthSetupError> {
        let mut users = HashMap::new();
        let mut blocks = 0;
        let mut decoy = None;
        for u in &cfg.users {
            let hash = StoredHash::parse(&u.password_hash)
                .ok_or_else(|| AuthSetupError::BadHash(u.name.clone()))?;
            blocks = blocks.max(hash.blocks());
            // The first user's parameters: an unknown login costs what that user's costs.
            decoy.get_or_insert_with(|| Arc::new(hash.decoy()));
            users.insert(
                u.name.clone(),
                StaticEntry {
                    hash: Arc::new(hash),
                    roles: u.roles.clone(),
                },
            );
        }
        let jwt = cfg.jwt.as_ref().map(load_jwt).transpose()?;
        let verifier = Verifier::new(&cfg.verify, blocks);
        if !users.is_empty() {
            tracing::info!(
                bytes = verifier.memory_bound(),
                "password verification memory bound (concurrency x largest hash memory)"
            );
        }
        let ignore_credentials = cfg.allow_anonymous
            && users.is_empty()
            && jwt.is_none()
            && cfg.unverifiable_credentials == UnverifiableCredentials::Ignore;
        Ok(Self {
            allow_anonymous: cfg.allow_anonymous,
            ignore_credentials,
            users,
            decoy,
            jwt,
            verifier,
            throttle: Arc::new(Throttle::new(&cfg.throttle)),
        })
    }

    /// The counter of password verifications run, for `/metrics`.
    pub fn password_checks(&self) -> Counter {
        self.verifier.checks.clone()
    }

    /// The most memory password verification can hold at once, in bytes.
    pub fn verification_memory_bound(&self) -> usize {
        self.verifier.memory_bound()
    }

    /// Whether credentials are ignored because nothing could verify them (see
    /// `[auth] unverifiable_credentials`).
    pub fn ignores_credentials(&self) -> bool {
        self.ignore_credentials
    }

    /// Authenticates a CONNECT frame's headers together with the handshake's credentials.
    pub async fn authenticate(
        &self,
        connect: &Headers,
        handshake: &HandshakeAuth,
        peer: IpAddr,
    ) -> Result<Identity, AuthError> {
        if self.ignore_credentials {
            // Anonymous whatever was sent: an unverified `login` never becomes an identity.
            return Ok(Identity::default());
        }
        if let Some(token) = connect
            .get_str("Authorization")
            .or_else(|| connect.get_str("authorization"))
            .and_then(bearer)
        {
            return self.verify_jwt(token);
        }
        let login = connect.get_str("login").filter(|l| !l.is_empty());
        let passcode = connect.get_str("passcode").filter(|p| !p.is_empty());
        if let (Some(login), Some(passcode)) = (login, passcode)
            && (self.users.contains_key(login) || self.jwt.is_none())
        {
            return self.verify_password(login, passcode, peer).await;
        }
        if let Some(passcode) = passcode {
            let token = self.verify_jwt(passcode);
            if token.is_err()
                && let Some(login) = login
            {
                // An unknown login whose passcode is no token must cost what a wrong passcode
                // costs, or response times would tell which logins exist.
                return self.verify_password(login, passcode, peer).await;
            }
            return token;
        }
        if let Some(token) = handshake
            .authorization
            .as_deref()
            .and_then(bearer)
            .or(handshake.access_token.as_deref())
        {
            return self.verify_jwt(token);
        }
        if self.allow_anonymous {
            Ok(Identity::default())
        } else {
            Err(AuthError::Failed)
        }
    }

    /// Verifies a static user's passcode: refused without a hash when there are no static
    /// users or the throttle says so; an unknown login is verified against the decoy.
    async fn verify_password(
        &self,
        login: &str,
        passcode: &str,
        peer: IpAddr,
    ) -> Result<Identity, AuthError> {
        let Some(decoy) = &self.decoy else {
            return Err(AuthError::Failed);
        };
        let addr = AddrKey::of(peer);
        if !self.throttle.allows(addr, login) {
            return Err(AuthError::Throttled);
        }
        let (hash, roles, known) = match self.users.get(login) {
            Some(e) => (Arc::clone(&e.hash), e.roles.clone(), true),
            None => (Arc::clone(decoy), Vec::new(), false),
        };
        let throttle = Arc::clone(&self.throttle);
        let name = login.to_owned();
        let ok = self
            .verifier
            .verify(addr, hash, passcode, move |ok| {
                throttle.record(addr, &name, ok && known);
            })
            .await
            .map_err(|_| AuthError::Throttled)?;
        if ok && known {
            Ok(Identity {
                user: Some(login.to_owned()),
                roles,
                claims: Vec::new(),
                expires_at: None,
            })
        } else {
            Err(AuthError::Failed)
        }
    }

    fn verify_jwt(&self, token: &str) -> Result<Identity, AuthError> {
        let jwt = self.jwt.as_ref().ok_or(AuthError::Failed)?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &jwt.key, &jwt.validation)
            .map_err(|_| AuthError::Failed)?;
        let claims = data.claims;
        let user = claims
            .get(&jwt.user_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Failed)?
            .to_owned();
        let roles = jwt
            .roles_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let expires_at = expiry(claims.get("exp"), jwt.leeway, SystemTime::now())?;
        Ok(Identity {
            user: Some(user),
            roles,
            claims: string_claims(&claims),
            expires_at: Some(expires_at),
        })
    }
}

/// Claims kept per connection are bounded: a token is the client's input.
const MAX_CLAIMS: usize = 64;
const MAX_CLAIM_LEN: usize = 256;

/// The token's top-level string claims, and each string in its array claims.
fn string_claims(claims: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(map) = claims.as_object() else {
        return out;
    };
    for (name, value) in map {
        let values: Vec<&str> = match value {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => continue,
        };
        for v in values {
            if out.len() == MAX_CLAIMS {
                return out;
            }
            if name.len() <= MAX_CLAIM_LEN && v.len() <= MAX_CLAIM_LEN {
                out.push((name.clone(), v.to_owned()));
            }
        }
    }
    out
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn load_jwt(cfg: &JwtConfig) -> Result<Jwt, AuthSetupError> {
    let (algorithm, key) = match cfg.algorithm.as_str() {
        "HS256" => {
            let secret = match (&cfg.secret_env, &cfg.secret_file) {
                (Some(var), _) => std::env::var(var)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| AuthSetupError::MissingSecret(var.clone()))?,
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end().to_owned())
                    .ok()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| AuthSetupError::MissingSecret(path.display().to_string()))?,
                (None, None) => {
                    return Err(AuthSetupError::MissingSecret("secret_env".to_owned()));
                }
            };
            (
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            )
        }
        alg @ ("RS256" | "ES256") => {
            let path = cfg.public_key_file.clone().unwrap_or_default();
            let shown = path.display().to_string();
            let pem = std::fs::read(&path)
                .map_err(|e| AuthSetupError::BadKey(shown.clone(), e.to_string()))?;
            if alg == "RS256" {
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| AuthSetupError::BadKey(shown, e.to_string()))?;
                (Algorithm::RS256, key)
            } else {
                let key = DecodingKey::from_ec_pem(&pem)
                    .map_err(|e| AuthSetupError::BadKey(shown, e.to_string()))?;
                (Algorithm::ES256, key)
            }
        }
        other => {
            return Err(AuthSetupError::BadKey(
                other.to_owned(),
                "unsupported algorithm".to_owned(),
            ));
        }
    };
    let mut validation = Validation::new(algorithm);
    validation.leeway = cfg.leeway_secs;
    validation.validate_nbf = true;
    validation.validate_aud = cfg.audience.is_some();
    // A configured issuer or audience is required, not only checked when present.
    let mut required = vec!["exp"];
    if let Some(aud) = &cfg.audience {
        validation.set_audience(&[aud]);
        required.push("aud");
    }
    if let Some(iss) = &cfg.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    Ok(Jwt {
        key,
        validation,
        leeway: Duration::from_secs(cfg.leeway_secs),
        user_claim: cfg.user_claim.clone(),
        roles_claim: cfg.roles_claim.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticUser;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n.to_string(), v.to_string());
        }
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn static_users_and_anonymous() {
        let cfg = AuthConfig {
            allow_anonymous: false,
            users: vec![StaticUser {
                name: "alice".into(),
                password_hash: hash_password("s3cret").unwrap(),
                roles: vec!["admin".into()],
            }],
            ..AuthConfig::default()
        };
        let a = Authenticator::from_config(&cfg).unwrap();
        let hs = HandshakeAuth::default();
        let login = |l: &'static str, p: &'static str| headers(&[("login", l), ("passcode", p)]);
        let ok = a.authenticate(&login("alice", "s3cret"), &hs, PEER).await;
        assert_eq!(ok.unwrap().user.as_deref(), Some("alice"));
        let wrong = a.authenticate(&login("alice", "nope"), &hs, PEER).await;
        assert_eq!(wrong, Err(AuthError::Failed));
        let unknown = a.authenticate(&login("bob", "s3cret"), &hs, PEER).await;
        assert_eq!(unknown, Err(AuthError::Failed));
        assert_eq!(
            a.password_checks().get(),
            3,
            "the unknown login was hashed too"
        );
        let none = a.authenticate(&headers(&[]), &hs, PEER).await;
        assert_eq!(none, Err(AuthError::Failed));
        assert_eq!(a.password_checks().get(), 3);
    }

    #[tokio::test]
    async fn without_static_users_a_login_costs_no_hash() {
        let h = headers(&[("login", "x"), ("passcode", "y")]);
        // Defaults (no store, anonymous allowed): not checked, anonymous.
        let a = Authenticator::from_config(&AuthConfig::default()).unwrap();
        let r = a.authenticate(&h, &HandshakeAuth::default(), PEER).await;
        assert_eq!(r, Ok(Identity::default()));
        assert_eq!(a.password_checks().get(), 0);
        // `unverifiable_credentials = "refuse"`: refused, still without a hash.
        let strict = AuthConfig {
            unverifiable_credentials: crate::config::UnverifiableCredentials::Refuse,
            ..AuthConfig::default()
        };
        let a = Authenticator::from_config(&strict).unwrap();
        let r = a.authenticate(&h, &HandshakeAuth::default(), PEER).await;
        assert!(r.is_err());
        assert_eq!(a.password_checks().get(), 0);
    }
}
