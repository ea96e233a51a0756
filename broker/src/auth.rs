//! Authentication: who a connection is.
//!
//! Credentials, in the order they are looked for: a JWT in the CONNECT `Authorization: Bearer`
//! header; `login` + `passcode` of a static user; a JWT as the CONNECT `passcode`; a JWT in the
//! WebSocket handshake's `Authorization` header or `access_token` query parameter (browsers
//! cannot set handshake headers, mobile clients often do). A connection that presents
//! credentials which fail is refused, never downgraded to anonymous. Failures all read
//! "authentication failed": nothing tells which part was wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use stomp_codec::Headers;
use tokio::sync::Semaphore;

use crate::config::{AuthConfig, JwtConfig};

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

/// Authentication failed. Deliberately says nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

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
    hash: String,
    roles: Vec<String>,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
    roles_claim: Option<String>,
}

/// Checks credentials. Built once at start-up.
pub struct Authenticator {
    allow_anonymous: bool,
    users: HashMap<String, StaticEntry>,
    /// Verified when the login is unknown, so an unknown login costs the same time as a wrong
    /// passcode.
    decoy_hash: String,
    jwt: Option<Jwt>,
    /// Argon2 is deliberately expensive; this bounds how many verifications run at once so a
    /// flood of CONNECTs cannot take every core.
    hashing: Arc<Semaphore>,
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
        for u in &cfg.users {
            if PasswordHash::new(&u.password_hash).is_err() {
                return Err(AuthSetupError::BadHash(u.name.clone()));
            }
            users.insert(
                u.name.clone(),
                StaticEntry {
                    hash: u.password_hash.clone(),
                    roles: u.roles.clone(),
                },
            );
        }
        // A fixed hash (of a password nobody uses) with the default parameters, so an unknown
        // login costs one verification like a known one, without hashing at start-up.
        let decoy_hash = DECOY_HASH.to_owned();
        let jwt = cfg.jwt.as_ref().map(load_jwt).transpose()?;
        Ok(Self {
            allow_anonymous: cfg.allow_anonymous,
            users,
            decoy_hash,
            jwt,
            hashing: Arc::new(Semaphore::new(4)),
        })
    }

    /// Authenticates a CONNECT frame's headers together with the handshake's credentials.
    pub async fn authenticate(
        &self,
        connect: &Headers,
        handshake: &HandshakeAuth,
    ) -> Result<Identity, AuthError> {
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
            return self.verify_password(login, passcode).await;
        }
        if let Some(passcode) = passcode {
            let token = self.verify_jwt(passcode);
            if token.is_err()
                && let Some(login) = login
            {
                // An unknown login whose passcode is no token must cost what a wrong passcode
                // costs, or response times would tell which logins exist.
                return self.verify_password(login, passcode).await;
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
            Err(AuthError)
        }
    }

    async fn verify_password(&self, login: &str, passcode: &str) -> Result<Identity, AuthError> {
        let (hash, roles, known) = match self.users.get(login) {
            Some(e) => (e.hash.clone(), e.roles.clone(), true),
            None => (self.decoy_hash.clone(), Vec::new(), false),
        };
        let permit = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| AuthError)?;
        let passcode = passcode.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(passcode.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok && known {
            Ok(Identity {
                user: Some(login.to_owned()),
                roles,
                claims: Vec::new(),
                expires_at: None,
            })
        } else {
            Err(AuthError)
        }
    }

    fn verify_jwt(&self, token: &str) -> Result<Identity, AuthError> {
        let jwt = self.jwt.as_ref().ok_or(AuthError)?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &jwt.key, &jwt.validation)
            .map_err(|_| AuthError)?;
        let claims = data.claims;
        let user = claims
            .get(&jwt.user_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(AuthError)?
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
        let expires_at = claims
            .get("exp")
            .and_then(|v| v.as_u64())
            .map(|s| UNIX_EPOCH + Duration::from_secs(s));
        Ok(Identity {
            user: Some(user),
            roles,
            claims: string_claims(&claims),
            expires_at,
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

const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$gizEANV2pZfK36o/SJlmzQ$AyHYcOmvDju1b5wF/AYhRxPi49OYs4V7p0O9xbFj4Gc";

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
    validation.validate_aud = cfg.audience.is_some();
    if let Some(aud) = &cfg.audience {
        validation.set_audience(&[aud]);
    }
    if let Some(iss) = &cfg.issuer {
        validation.set_issuer(&[iss]);
    }
    Ok(Jwt {
        key,
        validation,
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

    #[tokio::test]
    async fn static_users_and_anonymous() {
        let cfg = AuthConfig {
            allow_anonymous: false,
            users: vec![StaticUser {
                name: "alice".into(),
                password_hash: hash_password("s3cret").unwrap(),
                roles: vec!["admin".into()],
            }],
            jwt: None,
        };
        let a = Authenticator::from_config(&cfg).unwrap();
        let hs = HandshakeAuth::default();
        let ok = a
            .authenticate(&headers(&[("login", "alice"), ("passcode", "s3cret")]), &hs)
            .await;
        assert_eq!(ok.unwrap().user.as_deref(), Some("alice"));
        assert_eq!(
            a.authenticate(&headers(&[("login", "alice"), ("passcode", "nope")]), &hs)
                .await,
            Err(AuthError)
        );
        assert_eq!(
            a.authenticate(&headers(&[("login", "bob"), ("passcode", "s3cret")]), &hs)
                .await,
            Err(AuthError)
        );
        assert_eq!(a.authenticate(&headers(&[]), &hs).await, Err(AuthError));
    }
}

#[cfg(test)]
mod decoy_tests {
    use super::*;

    #[test]
    fn the_decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }
}
