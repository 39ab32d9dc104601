//! Signed add-on tokens: JWTs the gateway issues itself, which expire, can be
//! revoked and survive key rotation. Static tokens keep working beside them.
//!
//! Verification trusts nothing the token says about how to check it: the key
//! is chosen by `kid` among the configured keys, and that key's own algorithm
//! is the only one accepted. The role always comes from the add-on's entry in
//! the configuration; no claim can raise it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Addon;

/// The issuer and audience a token carries unless the config names others.
pub const DEFAULT_ISSUER: &str = "supervisor-gateway";
/// See [`DEFAULT_ISSUER`].
pub const DEFAULT_AUDIENCE: &str = "supervisor";

/// Why a signed token is refused (401). The reason is all the client learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Past its `exp`, beyond the leeway.
    Expired,
    /// Before its `nbf`, or issued in the future.
    NotYetValid,
    /// Its `jti` is on the revocation list, or its add-on's tokens issued
    /// before some instant were all revoked.
    Revoked,
    /// Anything else: malformed, badly signed, unknown key, wrong issuer or
    /// audience, unknown add-on.
    Invalid,
}

impl Rejection {
    /// The short reason the client gets.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Expired => "token expired",
            Rejection::NotYetValid => "token not yet valid",
            Rejection::Revoked => "token revoked",
            Rejection::Invalid => "invalid token",
        }
    }
}

/// Whether a token means to be a JWT: it starts like a base64url JSON
/// header (`eyJ`, from `{"`) and has at least two dots. Such a token that
/// is not one of the static tokens is verified, and refused with 401
/// `invalid token` if it is malformed, rather than taken for an unknown
/// static token.
pub fn looks_signed(token: &[u8]) -> bool {
    token.starts_with(b"eyJ") && token.iter().filter(|&&byte| byte == b'.').count() >= 2
}

/// A key's algorithm, pinned by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (`alg: EdDSA`).
    EdDSA,
    /// HMAC-SHA256 with a shared secret (`alg: HS256`).
    HS256,
}

impl KeyAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            KeyAlgorithm::HS256 => Algorithm::HS256,
        }
    }
}

/// One configured key.
pub struct Key {
    /// Its id, the token header's `kid`.
    pub kid: String,
    /// The one algorithm it verifies.
    pub algorithm: KeyAlgorithm,
    /// Whether new tokens may be signed with it; an old key that may not
    /// sign still verifies the tokens it signed until they expire.
    pub may_sign: bool,
    verifying: DecodingKey,
    signing: Option<EncodingKey>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("may_sign", &self.may_sign)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC-SHA256 key from its secret.
    pub fn hmac(kid: &str, secret: &[u8], may_sign: bool) -> Result<Key, String> {
        if secret.len() < 32 {
            return Err("an HS256 secret needs at least 32 bytes".into());
        }
        let verifying = DecodingKey::from_secret(secret).map_err(|_| "unusable HS256 secret")?;
        let signing = EncodingKey::from_secret(secret).map_err(|_| "unusable HS256 secret")?;
        Ok(Key {
            kid: kid.to_owned(),
            algorithm: KeyAlgorithm::HS256,
            may_sign,
            verifying,
            signing: Some(signing),
        })
    }

    /// An Ed25519 key from its PEM public key and, to sign, its PEM private
    /// key (PKCS#8, as `openssl genpkey -algorithm ed25519` writes it).
    ///
    /// An error names the field at fault (`public_key` or `private_key`) and
    /// why. A private key that does not belong to the public key is refused:
    /// it would sign tokens that never verify.
    pub fn ed25519(
        kid: &str,
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
        may_sign: bool,
    ) -> Result<Key, (&'static str, String)> {
        let verifying = DecodingKey::from_ed_pem(public_pem).map_err(|_| {
            let reason = "not an Ed25519 public key in PEM".to_owned();
            ("public_key", reason)
        })?;
        let signing = match private_pem {
            Some(pem) => Some(EncodingKey::from_ed_pem(pem).map_err(|_| {
                let reason = "not an Ed25519 private key in PEM (PKCS#8)".to_owned();
                ("private_key", reason)
            })?),
            None => None,
        };
        if may_sign && signing.is_none() {
            let reason = "a key that may sign (sign: true, the default) needs private_key".into();
            return Err(("private_key", reason));
        }
        let key = Key {
            kid: kid.to_owned(),
            algorithm: KeyAlgorithm::EdDSA,
            may_sign,
            verifying,
            signing,
        };
        if let Some(signing) = &key.signing {
            let probe = jsonwebtoken::crypto::sign(b"key pair check", signing, Algorithm::EdDSA);
            let verified = probe.ok().and_then(|signature| {
                jsonwebtoken::crypto::verify(
                    &signature,
                    b"key pair check",
                    &key.verifying,
                    Algorithm::EdDSA,
                )
                .ok()
            });
            if verified != Some(true) {
                let reason = "this private key does not belong to public_key".to_owned();
                return Err(("private_key", reason));
            }
        }
        Ok(key)
    }
}

/// Revoked tokens: by `jti`, and per add-on every token issued before an
/// instant (seconds since the Unix epoch).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    /// Revoked token ids. Required (`jti: []` for none): a file cut short
    /// to its comments, or to `{}`, must not read as an empty list and
    /// lift every revocation.
    pub jti: Vec<String>,
    /// Per add-on slug: tokens issued before this instant are refused.
    #[serde(default)]
    pub issued_before: std::collections::BTreeMap<String, u64>,
}

impl Revocations {
    /// Reads a revocation file. An empty file is an error, not an empty
    /// list: a file truncated by accident must not lift every revocation.
    pub fn load(path: &Path) -> Result<Revocations, RevocationError> {
        match crate::files::read_text(path, crate::files::MAX_FILE_BYTES) {
            Ok(text) if text.trim().is_empty() => Err(RevocationError::Invalid(
                "the file is empty (an empty list is `jti: []`)".into(),
            )),
            // Said as for the configuration, by line and a key shown only
            // where it cannot be a token (one pasted here would be a live
            // credential).
            Ok(text) => {
                let read: Revocations =
                    crate::config::from_guarded_yaml(&text, "").map_err(|error| {
                        RevocationError::Invalid(format!(
                            "not a revocation list: line {}: {}: {}",
                            error.line, error.key, error.reason
                        ))
                    })?;
                // An entry that is no slug revokes nothing, whatever it
                // looks like (`example` with an invisible character, say).
                // Not shown: it could be a token pasted by mistake.
                if read
                    .issued_before
                    .keys()
                    .any(|slug| !crate::config::is_slug(slug))
                {
                    return Err(RevocationError::Invalid(
                        "not a revocation list: issued_before: an entry is not an add-on slug \
                         (letters, digits, `-`, `_` and `.`)"
                            .into(),
                    ));
                }
                Ok(read)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(RevocationError::Missing)
            }
            Err(error) => Err(RevocationError::Invalid(format!("cannot read: {error}"))),
        }
    }

    /// Writes the list back, replacing the file in one step.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::from(
            "# Revoked signed tokens, written by `supervisor-gateway token revoke`.\n\
             # jti: token ids; issued_before: per add-on, tokens issued before this\n\
             # instant (seconds since 1970-01-01 UTC) are refused.\n",
        );
        text.push_str(if self.jti.is_empty() {
            "jti: []\n"
        } else {
            "jti:\n"
        });
        for jti in &self.jti {
            text.push_str(&format!("  - {}\n", serde_json::Value::from(jti.as_str())));
        }
        text.push_str(if self.issued_before.is_empty() {
            "issued_before: {}\n"
        } else {
            "issued_before:\n"
        });
        for (slug, instant) in &self.issued_before {
            text.push_str(&format!(
                "  {}: {instant}\n",
                serde_json::Value::from(slug.as_str())
            ));
        }
        crate::files::replace(path, &text)
    }

    /// Reads the list at `path`, changes it and writes it back, holding an
    /// exclusive lock on `PATH.lock` throughout, so that two revocations at
    /// once both land.
    pub fn update(path: &Path, change: impl FnOnce(&mut Revocations)) -> Result<(), String> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let shown = Path::new(&lock_path).display();
        // Opened without waiting and asked its type: a FIFO or a device
        // planted at the name would otherwise hold the command for good.
        let lock = crate::files::without_waiting(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true),
        )
        .open(&lock_path)
        .map_err(|error| format!("cannot open {shown}: {error}"))?;
        if !lock.metadata().is_ok_and(|meta| meta.is_file()) {
            return Err(format!("cannot lock {shown}: not a regular file"));
        }
        lock.lock()
            .map_err(|error| format!("cannot lock {shown}: {error}"))?;
        let mut list = match Revocations::load(path) {
            Ok(list) => list,
            Err(RevocationError::Missing) => Revocations::default(),
            Err(error) => return Err(format!("{}: {error}", path.display())),
        };
        change(&mut list);
        list.store(path)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

/// Why a revocation file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The file does not exist.
    #[error("the file does not exist")]
    Missing,
    /// It exists but is not a revocation list.
    #[error("{0}")]
    Invalid(String),
}

/// The claims the gateway reads. Any other claim, a role among them, is
/// ignored.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    iss: String,
    aud: String,
    jti: String,
}

/// What every token must say, and how much clock skew is forgiven.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim.
    pub audience: String,
    /// Leeway for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

/// The signed-token settings: keys, expected issuer and audience, leeway,
/// revocations, and the add-ons tokens may be issued for.
pub struct SignedTokens {
    keys: Vec<Key>,
    /// Each key's checks, in the order of `keys`: built once, at load.
    validations: Vec<Validation>,
    issuer: String,
    audience: String,
    leeway: u64,
    revocation_file: Option<PathBuf>,
    revocations_missing: bool,
    key_files: Vec<PathBuf>,
    revoked_jti: HashSet<String>,
    issued_before: HashMap<String, u64>,
    addons: HashMap<String, Arc<Addon>>,
}

impl fmt::Debug for SignedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedTokens")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("revoked", &self.revoked_jti.len())
            .finish_non_exhaustive()
    }
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// No add-on with that slug is configured.
    #[error("no add-on with the slug {0:?} is configured")]
    UnknownAddon(String),
    /// No key with that id, or none that may sign.
    #[error("{0}")]
    NoKey(String),
    /// The signature could not be made.
    #[error("signing failed")]
    Signing,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A fresh random token id.
fn fresh_jti() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    // The kernel's generator; a token id needs to be unique, not secret,
    // but it must not be guessable either, or a revocation could be aimed.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    hex::encode(bytes)
}

impl SignedTokens {
    /// The settings, with the revocations read from `revocation_file`
    /// (`None` when that file does not exist yet) and the key files they
    /// were read from.
    pub fn new(
        keys: Vec<Key>,
        expected: Expected,
        revocations: Option<Revocations>,
        revocation_file: Option<PathBuf>,
        key_files: Vec<PathBuf>,
        addons: &[Arc<Addon>],
    ) -> SignedTokens {
        let revocations_missing = revocations.is_none();
        let revocations = revocations.unwrap_or_default();
        let leeway = expected.leeway.as_secs();
        let validations = keys
            .iter()
            .map(|key| {
                let mut validation = Validation::new(key.algorithm.jwt());
                validation.leeway = leeway;
                validation.validate_nbf = true;
                validation.set_issuer(&[&expected.issuer]);
                validation.set_audience(&[&expected.audience]);
                validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud", "jti"]);
                validation
            })
            .collect();
        SignedTokens {
            revocations_missing,
            key_files,
            keys,
            validations,
            issuer: expected.issuer,
            audience: expected.audience,
            leeway,
            revocation_file,
            revoked_jti: revocations.jti.into_iter().collect(),
            issued_before: revocations.issued_before.into_iter().collect(),
            addons: addons
                .iter()
                .map(|addon| (addon.slug.clone(), addon.clone()))
                .collect(),
        }
    }

    /// The files whose change should reload the configuration: the key
    /// files and the revocation file.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.key_files.clone();
        files.extend(self.revocation_file.clone());
        files
    }

    /// How many `issued_before` entries name no add-on of this
    /// configuration (they revoke nothing).
    pub fn revoked_unknown_addons(&self) -> usize {
        self.issued_before
            .keys()
            .filter(|slug| !self.addons.contains_key(*slug))
            .count()
    }

    /// Whether the revocation file did not exist when it was read.
    pub fn revocations_missing(&self) -> bool {
        self.revocations_missing
    }

    /// Whether any token is revoked, by id or by add-on.
    pub fn has_revocations(&self) -> bool {
        !self.revoked_jti.is_empty() || !self.issued_before.is_empty()
    }

    /// The revocation file, if one is configured.
    pub fn revocation_file(&self) -> Option<&Path> {
        self.revocation_file.as_deref()
    }

    /// The configured add-on with this slug.
    pub fn addon(&self, slug: &str) -> Option<Arc<Addon>> {
        self.addons.get(slug).cloned()
    }

    /// The ids of the configured keys.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.kid.as_str()).collect()
    }

    /// How many token ids are revoked.
    pub fn revoked(&self) -> usize {
        self.revoked_jti.len()
    }

    /// The add-on a token speaks for, if it verifies at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Addon>, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid)?;
        let kid = header.kid.as_deref().ok_or(Rejection::Invalid)?;
        let (key, validation) = self
            .keys
            .iter()
            .zip(&self.validations)
            .find(|(key, _)| key.kid == kid)
            .ok_or(Rejection::Invalid)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.verifying, validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                _ => Rejection::Invalid,
            })?
            .claims;
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(Rejection::NotYetValid);
        }
        let addon = self.addons.get(&claims.sub).ok_or(Rejection::Invalid)?;
        if self.revoked_jti.contains(&claims.jti) {
            return Err(Rejection::Revoked);
        }
        if let Some(&instant) = self.issued_before.get(&claims.sub) {
            if claims.iat < instant {
                return Err(Rejection::Revoked);
            }
        }
        Ok(addon.clone())
    }

    /// A token for the add-on `slug`, valid from `now` for `ttl`, signed
    /// with the key `kid` or else the first key that may sign.
    pub fn issue(
        &self,
        slug: &str,
        ttl: Duration,
        kid: Option<&str>,
        now: u64,
    ) -> Result<String, IssueError> {
        if !self.addons.contains_key(slug) {
            return Err(IssueError::UnknownAddon(slug.to_owned()));
        }
        let key = match kid {
            Some(kid) => {
                let key = self.keys.iter().find(|key| key.kid == kid);
                let key =
                    key.ok_or_else(|| IssueError::NoKey(format!("no key with kid {kid:?}")))?;
                if !key.may_sign {
                    return Err(IssueError::NoKey(format!("key {kid:?} may no longer sign")));
                }
                key
            }
            None => self.keys.iter().find(|key| key.may_sign).ok_or_else(|| {
                IssueError::NoKey("no configured key may sign (sign: true)".into())
            })?,
        };
        let signing = key
            .signing
            .as_ref()
            .ok_or_else(|| IssueError::NoKey(format!("key {:?} has no private key", key.kid)))?;
        let claims = Claims {
            sub: slug.to_owned(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: fresh_jti(),
        };
        let mut header = Header::new(key.algorithm.jwt());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, signing).map_err(|_| IssueError::Signing)
    }
}

/// A new Ed25519 key pair as PEM: the private key (PKCS#8) and the public
/// key (SubjectPublicKeyInfo), the forms `openssl genpkey -algorithm ed25519`
/// and `openssl pkey -pubout` write.
pub fn generate_ed25519() -> Result<(String, String), String> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let random = aws_lc_rs::rand::SystemRandom::new();
    // Version 1 (no public key inside), the form OpenSSL 3.0 reads.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&random).map_err(|_| "key generation failed")?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref())
        .map_err(|_| "key generation failed")?;
    // The fixed DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
    let mut public = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    public.extend_from_slice(pair.public_key().as_ref());
    Ok((
        pem("PRIVATE KEY", pkcs8.as_ref()),
        pem("PUBLIC KEY", &public),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A token's header and claims, decoded without checking the signature or
/// any claim.
pub fn inspect(token: &str) -> Result<(serde_json::Value, serde_json::Value), String> {
    if token.trim().is_empty() {
        return Err("no token given".into());
    }
    let mut parts = token.trim().split('.');
    let mut decode = |what: &str| -> Result<serde_json::Value, String> {
        let part = parts.next().ok_or(format!("no {what}: not a JWT"))?;
        let bytes = base64url_decode(part).ok_or(format!("the {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| format!("the {what} is not JSON"))
    };
    let header = decode("header")?;
    let claims = decode("claims")?;
    Ok((header, claims))
}

/// Decodes base64url, with or without padding.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    engine.decode(text.trim_end_matches('=')).ok()
}

/// The longest lifetime `token issue` gives: ten years.
const MAX_TTL_S: u64 = 3650 * 86_400;

/// Parses a lifetime such as `30d`, `12h`, `15m` or `90s`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, like 30d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    match number.checked_mul(seconds) {
        Some(total) if total > 0 && total <= MAX_TTL_S => Ok(Duration::from_secs(total)),
        _ => Err(format!("{text:?}: from 1s up to 3650d")),
    }
}

#[cfg(test)]
#[path = "signed_tests.rs"]
mod tests;
