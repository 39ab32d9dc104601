//! The `signing` section: the keys signed tokens are checked with, the
//! claims to expect and the revocation list.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line_of, trim_newline, Addon, Checker, ConfigError};
use crate::signed::{self, Key, KeyAlgorithm, RevocationError, Revocations, SignedTokens};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    issuer: Option<String>,
    audience: Option<String>,
    leeway_s: Option<u64>,
    revocation_file: Option<Spanned<String>>,
    keys: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    kid: Spanned<String>,
    algorithm: Spanned<String>,
    #[serde(default = "yes")]
    sign: bool,
    public_key: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

impl Checker<'_> {
    /// The signing keys, claims to expect and revocations.
    pub(super) fn signing(
        &self,
        raw: &Spanned<RawSigning>,
        addons: &[Arc<Addon>],
    ) -> Result<SignedTokens, ConfigError> {
        let raw_signing = &raw.value;
        if raw_signing.keys.is_empty() {
            return Err(self.error(line_of(raw), "signing.keys", "at least one key is needed"));
        }
        let mut keys: Vec<Key> = Vec::new();
        let mut files = Vec::new();
        for (index, entry) in raw_signing.keys.iter().enumerate() {
            let kid = &entry.value.kid;
            if kid.value.is_empty() || keys.iter().any(|key| key.kid == kid.value) {
                let reason = "each key needs its own, non-empty kid";
                let key = format!("signing.keys[{index}].kid");
                return Err(self.error(line_of(kid), &key, reason));
            }
            keys.push(self.signing_key(index, entry, &mut files)?);
        }
        let (revocations, revocation_file) = self.revocations(raw_signing)?;
        let expected = self.expected_claims(raw)?;
        Ok(SignedTokens::new(
            keys,
            expected,
            revocations,
            revocation_file,
            files,
            addons,
        ))
    }

    /// One entry of `signing.keys`; the files it reads are added to `files`
    /// (watched for reloads).
    fn signing_key(
        &self,
        index: usize,
        entry: &Spanned<RawKey>,
        files: &mut Vec<PathBuf>,
    ) -> Result<Key, ConfigError> {
        let at = |field: &str| format!("signing.keys[{index}].{field}");
        let raw_key = &entry.value;
        let kid = &raw_key.kid.value;
        let algorithm = match raw_key.algorithm.value.as_str() {
            "EdDSA" => KeyAlgorithm::EdDSA,
            "HS256" => KeyAlgorithm::HS256,
            _ => {
                // Not echoed: a token pasted on the wrong line would be.
                let reason = "not one of EdDSA, HS256";
                return Err(self.error(line_of(&raw_key.algorithm), &at("algorithm"), reason));
            }
        };
        match algorithm {
            KeyAlgorithm::HS256 => {
                // Where a secret that is refused (too short) was given.
                let (secret, given_at) = match (&raw_key.secret, &raw_key.secret_file) {
                    (Some(secret), None) => (
                        secret.value.clone().into_bytes(),
                        (line_of(secret), "secret"),
                    ),
                    (None, Some(file)) => {
                        files.push(self.resolve(&file.value));
                        let secret = self.read_key_file(file, &at("secret_file"))?;
                        (secret, (line_of(file), "secret_file"))
                    }
                    _ => {
                        let reason = "an HS256 key needs exactly one of secret, secret_file";
                        return Err(self.error(line_of(entry), &at("secret"), reason));
                    }
                };
                if raw_key.public_key.is_some() || raw_key.private_key.is_some() {
                    let reason = "an HS256 key takes a secret, not PEM keys";
                    return Err(self.error(line_of(entry), &at("algorithm"), reason));
                }
                let secret = trim_newline(secret);
                let (line, key) = given_at;
                Key::hmac(kid, &secret, raw_key.sign)
                    .map_err(|reason| self.error(line, &at(key), reason))
            }
            KeyAlgorithm::EdDSA => {
                if raw_key.secret.is_some() || raw_key.secret_file.is_some() {
                    let reason = "an EdDSA key takes public_key and private_key, not a secret";
                    return Err(self.error(line_of(entry), &at("algorithm"), reason));
                }
                let Some(public) = &raw_key.public_key else {
                    let reason = "an EdDSA key needs public_key (a PEM file)";
                    return Err(self.error(line_of(entry), &at("public_key"), reason));
                };
                files.push(self.resolve(&public.value));
                let public_pem = self.read_key_file(public, &at("public_key"))?;
                let private_pem = match &raw_key.private_key {
                    Some(file) => {
                        files.push(self.resolve(&file.value));
                        Some(self.read_key_file(file, &at("private_key"))?)
                    }
                    None => None,
                };
                Key::ed25519(kid, &public_pem, private_pem.as_deref(), raw_key.sign).map_err(
                    |(field, reason)| {
                        let line = match field {
                            "private_key" => raw_key.private_key.as_ref().map(line_of),
                            _ => Some(line_of(public)),
                        };
                        self.error(line.unwrap_or(line_of(entry)), &at(field), reason)
                    },
                )
            }
        }
    }

    /// The revocation list and the file it is read from. A named file that
    /// does not exist yet is no list at all (`None`); without a file the list
    /// is empty.
    fn revocations(
        &self,
        raw: &RawSigning,
    ) -> Result<(Option<Revocations>, Option<PathBuf>), ConfigError> {
        let Some(file) = &raw.revocation_file else {
            return Ok((Some(Revocations::default()), None));
        };
        self.names_a_file(file, "signing.revocation_file")?;
        let path = self.resolve(&file.value);
        match Revocations::load(&path) {
            Ok(list) => Ok((Some(list), Some(path))),
            Err(RevocationError::Missing) => Ok((None, Some(path))),
            Err(error) => {
                let reason = format!("{}: {error}", path.display());
                Err(self.error(line_of(file), "signing.revocation_file", reason))
            }
        }
    }

    /// The issuer, audience and leeway a signed token must match.
    fn expected_claims(&self, raw: &Spanned<RawSigning>) -> Result<signed::Expected, ConfigError> {
        let raw_signing = &raw.value;
        let leeway = match raw_signing.leeway_s {
            Some(leeway) if leeway > 3600 => {
                let reason =
                    "at most 3600 seconds: a larger leeway would keep expired tokens alive";
                return Err(self.error(line_of(raw), "signing.leeway_s", reason));
            }
            leeway => leeway.unwrap_or(30),
        };
        Ok(signed::Expected {
            issuer: raw_signing
                .issuer
                .clone()
                .unwrap_or_else(|| signed::DEFAULT_ISSUER.to_owned()),
            audience: raw_signing
                .audience
                .clone()
                .unwrap_or_else(|| signed::DEFAULT_AUDIENCE.to_owned()),
            leeway: Duration::from_secs(leeway),
        })
    }
}
