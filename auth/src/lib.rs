//! Who may do what. A caller presents a bearer token (`Authorization: Bearer
//! …` on HTTP, the `authorization` metadata on gRPC); [`Auth::check`] finds the
//! configured token it matches — comparing SHA-256 digests in constant time,
//! so neither the token nor its length leaks through timing — and answers with
//! the [`Caller`]: its name, [`Role`], tenant and the services it may report
//! as. With no tokens configured every caller is [`Caller::Anyone`].
//!
//! Tokens are read from the config file, a file or an environment variable
//! ([`TokenConfig`]); only their digests are kept, and neither `Debug` nor any
//! error message shows one. [`tls`] loads the certificate and key every
//! listener serves with.
//!
//! Each edge maps [`Denied`] to its protocol once: 401 / `UNAUTHENTICATED`
//! when the token is missing or unknown, 403 / `PERMISSION_DENIED` when its
//! role does not allow the request.

pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token allows. `Admin` allows everything; `Ingest` only sending
/// spans; `Query` only reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Query,
    Admin,
}

impl Role {
    fn allows(self, need: Role) -> bool {
        self == Role::Admin || self == need
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Admin => "admin",
        })
    }
}

/// A configured token: exactly one of `token`, `token_file` (its first line)
/// or `token_env` (a variable read at start) gives the secret.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs and errors instead of the token.
    pub name: String,
    pub role: Option<Role>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// The tenant whose spans this token writes and reads; none: an ingest
    /// token writes to no tenant, a query or admin token reads every tenant.
    pub tenant: Option<String>,
    /// For an ingest token: the `service.name`s whose governance data
    /// (approvals, policy verdicts) is trusted when sent with this token.
    pub services: Option<Vec<String>>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("token_env", &self.token_env)
            .field("tenant", &self.tenant)
            .field("services", &self.services)
            .finish()
    }
}

/// Why the tokens cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("token {name:?}: give exactly one of token, token_file or token_env")]
    Source { name: String },
    #[error("token {name:?}: give its role: ingest, query or admin")]
    NoRole { name: String },
    #[error("a token needs a name (it is shown in logs instead of the token)")]
    NoName,
    #[error("token {name:?}: cannot read token_file {path}: {source}")]
    File {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token {name:?}: the environment variable {var} is not set")]
    Env { name: String, var: String },
    #[error(
        "token {name:?} is {len} characters; use at least {MIN_TOKEN_LEN} (for example `openssl rand -hex 32`)"
    )]
    Short { name: String, len: usize },
    #[error("tokens {first:?} and {second:?} are the same secret; give each its own")]
    Duplicate { first: String, second: String },
    #[error("two tokens are named {name:?}; names must be unique")]
    DuplicateName { name: String },
    #[error("token {name:?}: services are for ingest tokens (role ingest or admin)")]
    ServicesOnQuery { name: String },
    #[error("token {name:?}: a tenant is a non-empty name of letters, digits, '-', '_' or '.'")]
    Tenant { name: String },
}

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub services: Option<Vec<String>>,
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off: anyone may do anything, and sees every tenant.
    Anyone,
    Token(Arc<Principal>),
}

impl Caller {
    /// The tenant this caller writes to and reads; `None` writes to no tenant
    /// and reads all of them.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Token(p) => p.tenant.as_deref(),
        }
    }

    /// The token's name, for logs; `None` when authentication is off.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Token(p) => Some(&p.name),
        }
    }

    /// Whether governance data from `service` sent by this caller is
    /// trusted: only when the token is bound to that service.
    pub fn vouches_for(&self, service: &str) -> bool {
        match self {
            Caller::Anyone => false,
            Caller::Token(p) => p
                .services
                .as_ref()
                .is_some_and(|s| s.iter().any(|s| s == service)),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "authentication required: send the header `Authorization: Bearer <token>` with a token from the server's config"
    )]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is not one this server knows; check the token you configured")]
    Unknown,
    #[error("token {name:?} has role {role}; this needs role {need} (or admin)")]
    Forbidden {
        name: String,
        role: Role,
        need: Role,
    },
    /// The request reads what every tenant shares (counters, say).
    #[error(
        "token {name:?} reads one tenant's data; {what} covers every tenant: use a token without a tenant"
    )]
    TenantScoped { name: String, what: &'static str },
}

impl Denied {
    /// 401 / `UNAUTHENTICATED` rather than 403 / `PERMISSION_DENIED`.
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, Denied::Forbidden { .. } | Denied::TenantScoped { .. })
    }
}

struct Entry {
    digest: [u8; 32],
    principal: Arc<Principal>,
}

/// The configured tokens.
#[derive(Default)]
pub struct Auth {
    entries: Vec<Entry>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.principal))
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Auth {
    /// Loads the tokens; none means authentication is off.
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Self, ConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(tokens.len());
        for t in tokens {
            let name = t.name.clone();
            if name.trim().is_empty() {
                return Err(ConfigError::NoName);
            }
            let role = t
                .role
                .ok_or_else(|| ConfigError::NoRole { name: name.clone() })?;
            let secret = match (&t.token, &t.token_file, &t.token_env) {
                (Some(s), None, None) => s.clone(),
                (None, Some(path), None) => std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::File {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                (None, None, Some(var)) => std::env::var(var).map_err(|_| ConfigError::Env {
                    name: name.clone(),
                    var: var.clone(),
                })?,
                _ => return Err(ConfigError::Source { name }),
            };
            let secret = secret.trim();
            if secret.len() < MIN_TOKEN_LEN {
                return Err(ConfigError::Short {
                    name,
                    len: secret.len(),
                });
            }
            if t.services.is_some() && role == Role::Query {
                return Err(ConfigError::ServicesOnQuery { name });
            }
            if let Some(tenant) = &t.tenant
                && !valid_tenant(tenant)
            {
                return Err(ConfigError::Tenant { name });
            }
            let digest = digest(secret.as_bytes());
            for e in &entries {
                if e.principal.name == name {
                    return Err(ConfigError::DuplicateName { name });
                }
                if bool::from(e.digest.ct_eq(&digest)) {
                    return Err(ConfigError::Duplicate {
                        first: e.principal.name.clone(),
                        second: name,
                    });
                }
            }
            entries.push(Entry {
                digest,
                principal: Arc::new(Principal {
                    name,
                    role,
                    tenant: t.tenant.clone(),
                    services: t.services.clone(),
                }),
            });
        }
        Ok(Self { entries })
    }

    /// Whether any token is configured.
    pub fn is_enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Who sends `authorization` (the header's value), if they may do what
    /// `need` allows.
    pub fn check(&self, authorization: Option<&[u8]>, need: Role) -> Result<Caller, Denied> {
        if self.entries.is_empty() {
            return Ok(Caller::Anyone);
        }
        let value = authorization.ok_or(Denied::Missing)?;
        let token = bearer(value).ok_or(Denied::Malformed)?;
        self.check_token(token, need)
    }

    /// Who presents `token` (the secret itself, as PostgreSQL clients send
    /// it for a password), if they may do what `need` allows.
    pub fn check_token(&self, token: &[u8], need: Role) -> Result<Caller, Denied> {
        if self.entries.is_empty() {
            return Ok(Caller::Anyone);
        }
        if token.is_empty() {
            return Err(Denied::Missing);
        }
        let presented = digest(token);
        // Every entry is compared, whichever matches, so the time taken says
        // nothing about which token (or how much of one) was right.
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&presented)) {
                found = Some(&e.principal);
            }
        }
        let principal = found.ok_or(Denied::Unknown)?;
        if !principal.role.allows(need) {
            return Err(Denied::Forbidden {
                name: principal.name.clone(),
                role: principal.role,
                need,
            });
        }
        Ok(Caller::Token(Arc::clone(principal)))
    }

    /// [`Auth::check`] on an HTTP request's `Authorization` header.
    pub fn check_headers(&self, headers: &http::HeaderMap, need: Role) -> Result<Caller, Denied> {
        self.check(
            headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            need,
        )
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, secret: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            role: Some(role),
            token: Some(secret.into()),
            ..Default::default()
        }
    }

    fn auth() -> Auth {
        let mut ingest = token("collector", Role::Ingest, "ingest-secret-0123456789");
        ingest.services = Some(vec!["checkout".into()]);
        ingest.tenant = Some("acme".into());
        Auth::from_config(&[
            ingest,
            token("grafana", Role::Query, "query-secret-0123456789"),
            token("ops", Role::Admin, "admin-secret-0123456789"),
        ])
        .unwrap()
    }

    #[test]
    fn no_tokens_lets_anyone_in() {
        let auth = Auth::from_config(&[]).unwrap();
        assert!(!auth.is_enabled());
        assert_eq!(auth.check(None, Role::Admin), Ok(Caller::Anyone));
    }

    #[test]
    fn roles_allow_what_they_name_and_admin_everything() {
        let auth = auth();
        let ingest = Some(&b"Bearer ingest-secret-0123456789"[..]);
        let query = Some(&b"bearer query-secret-0123456789"[..]);
        let admin = Some(&b"BEARER  admin-secret-0123456789 "[..]);
        let caller = auth.check(ingest, Role::Ingest).unwrap();
        assert_eq!(caller.name(), Some("collector"));
        assert_eq!(caller.tenant(), Some("acme"));
        assert!(caller.vouches_for("checkout"));
        assert!(!caller.vouches_for("payments"));
        assert!(matches!(
            auth.check(ingest, Role::Query),
            Err(Denied::Forbidden {
                need: Role::Query,
                ..
            })
        ));
        assert!(auth.check(query, Role::Query).is_ok());
        assert!(
            !auth
                .check(query, Role::Ingest)
                .unwrap_err()
                .is_unauthenticated()
        );
        for need in [Role::Ingest, Role::Query, Role::Admin] {
            assert!(auth.check(admin, need).is_ok());
        }
        assert!(
            !auth
                .check(admin, Role::Query)
                .unwrap()
                .vouches_for("checkout")
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
        let auth = auth();
        for (value, want) in [
            (None, Denied::Missing),
            (Some(&b"Basic dXNlcjpwYXNz"[..]), Denied::Malformed),
            (Some(&b"Bearer "[..]), Denied::Malformed),
            (Some(&b"Bearer"[..]), Denied::Malformed),
            (
                Some(&b"Bearer ingest-secret-012345678"[..]),
                Denied::Unknown,
            ),
            (
                Some(&b"Bearer ingest-secret-01234567890"[..]),
                Denied::Unknown,
            ),
        ] {
            let denied = auth.check(value, Role::Ingest).unwrap_err();
            assert_eq!(denied, want);
            assert!(denied.is_unauthenticated());
        }
    }

    #[test]
    fn tokens_come_from_files_and_the_environment_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-secret-0123456789\n").unwrap();
        let from_file = TokenConfig {
            name: "f".into(),
            role: Some(Role::Query),
            token_file: Some(path),
            ..Default::default()
        };
        let auth = Auth::from_config(std::slice::from_ref(&from_file)).unwrap();
        assert!(
            auth.check(Some(b"Bearer file-secret-0123456789"), Role::Query)
                .is_ok()
        );
        let missing_env = TokenConfig {
            name: "e".into(),
            role: Some(Role::Query),
            token_env: Some("WEFT_TEST_SURELY_UNSET_VARIABLE".into()),
            ..Default::default()
        };
        assert!(matches!(
            Auth::from_config(&[missing_env]),
            Err(ConfigError::Env { .. })
        ));
        let secret = "shown-nowhere-0123456789";
        let inline = token("inline", Role::Admin, secret);
        assert!(!format!("{inline:?}").contains(secret));
        let auth = Auth::from_config(&[inline]).unwrap();
        assert!(!format!("{auth:?}").contains(secret));
    }

    #[test]
    fn weak_duplicate_and_ambiguous_tokens_are_refused() {
        let short = token("s", Role::Admin, "short");
        assert!(matches!(
            Auth::from_config(&[short]),
            Err(ConfigError::Short { len: 5, .. })
        ));
        let a = token("a", Role::Admin, "same-secret-0123456789");
        let b = token("b", Role::Query, "same-secret-0123456789");
        let err = Auth::from_config(&[a.clone(), b]).unwrap_err();
        assert!(matches!(err, ConfigError::Duplicate { .. }));
        assert!(!err.to_string().contains("same-secret"));
        let two_sources = TokenConfig {
            token_env: Some("X".into()),
            ..a.clone()
        };
        assert!(matches!(
            Auth::from_config(&[two_sources]),
            Err(ConfigError::Source { .. })
        ));
        let no_role = TokenConfig { role: None, ..a };
        assert!(matches!(
            Auth::from_config(&[no_role]),
            Err(ConfigError::NoRole { .. })
        ));
        let bad_tenant = TokenConfig {
            tenant: Some("acme corp".into()),
            ..token("t", Role::Query, "tenant-secret-0123456789")
        };
        assert!(matches!(
            Auth::from_config(&[bad_tenant]),
            Err(ConfigError::Tenant { .. })
        ));
    }
}
