//! `supervisor-gateway token issue | inspect | revoke`: the operator's side of
//! signed tokens. Each returns the text to print or a message for the error.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::signed::{self, Revocations, SignedTokens};

/// What `token revoke` revokes.
pub enum Revoke<'a> {
    /// One token, by its `jti`.
    Jti(&'a str),
    /// Every token of this add-on issued until now.
    Addon(&'a str),
}

fn signed_tokens(config: &Path) -> Result<(Config, Arc<SignedTokens>), String> {
    let config = Config::load(config).map_err(|error| format!("config error: {error}"))?;
    let signed = config.callers.signed.clone().ok_or_else(|| {
        format!(
            "{}: no signing keys are configured (add a signing section)",
            config.source
        )
    })?;
    Ok((config, signed))
}

/// A new token for `slug`, valid for `ttl` (e.g. `30d`).
pub fn issue(config: &Path, slug: &str, ttl: &str, kid: Option<&str>) -> Result<String, String> {
    let ttl = signed::parse_ttl(ttl).map_err(|error| format!("--ttl {error}"))?;
    let (_, signed) = signed_tokens(config)?;
    signed
        .issue(slug, ttl, kid, signed::now())
        .map_err(|error| error.to_string())
}

/// A token's header and claims, plainly marked as not verified.
pub fn inspect(token: &str) -> Result<String, String> {
    let (header, claims) = signed::inspect(token)?;
    let pretty = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    let mut out = String::from(
        "NOT VERIFIED: this is what the token says about itself; only the gateway can tell whether it is valid.\n",
    );
    out.push_str(&format!("header: {}\n", pretty(&header)));
    out.push_str(&format!("claims: {}\n", pretty(&claims)));
    if let Some(exp) = claims["exp"].as_u64() {
        let now = signed::now();
        if exp > now {
            out.push_str(&format!("expires in {}\n", span(exp - now)));
        } else {
            out.push_str(&format!("expired {} ago\n", span(now - exp)));
        }
    }
    Ok(out)
}

/// A number of seconds as days, hours, minutes and seconds.
fn span(seconds: u64) -> String {
    let (days, hours) = (seconds / 86_400, seconds % 86_400 / 3600);
    let (minutes, seconds) = (seconds % 3600 / 60, seconds % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Adds a revocation to the configured revocation file, which the running
/// gateway reloads when it changes.
pub fn revoke(config: &Path, what: Revoke<'_>) -> Result<String, String> {
    let (config, signed) = signed_tokens(config)?;
    let file = signed.revocation_file().ok_or_else(|| {
        format!(
            "{}: signing.revocation_file is not set, so there is nowhere to record a revocation",
            config.source
        )
    })?;
    let done = match what {
        Revoke::Jti(jti) => {
            let jti = jti.trim().to_owned();
            if jti.is_empty() || jti.len() > 256 {
                return Err("--jti takes a token id as `token inspect` shows it".into());
            }
            Revocations::update(file, |list| {
                if !list.jti.contains(&jti) {
                    list.jti.push(jti.clone());
                }
            })?;
            format!("revoked the token with jti {jti}")
        }
        Revoke::Addon(slug) => {
            if signed.addon(slug).is_none() {
                return Err(format!("no add-on with the slug {slug:?} is configured"));
            }
            // Tokens carry whole seconds: every token issued in this second
            // or before is refused, and this waits for the next second so
            // that a token issued after it returns is good.
            let instant = signed::now() + 1;
            Revocations::update(file, |list| {
                list.issued_before.insert(slug.to_owned(), instant);
            })?;
            while signed::now() < instant {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            format!(
                "revoked every signed token of {slug} issued before {instant} (Unix time); its static token, if any, is not affected"
            )
        }
    };
    Ok(format!(
        "{done}; written to {} (a running gateway picks it up within two to four watch intervals, or at once on SIGHUP)",
        file.display()
    ))
}

/// Writes a new Ed25519 key pair to `PREFIX.pem` (private, readable by the
/// owner only) and `PREFIX.pub.pem`, refusing to overwrite either.
pub fn keygen(prefix: &Path) -> Result<String, String> {
    let with = |suffix: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (private, public) = (with(".pem"), with(".pub.pem"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(format!("{} exists; not overwritten", path.display()));
        }
    }
    let (private_pem, public_pem) = signed::generate_ed25519()?;
    write_private(&private, private_pem.as_bytes())
        .map_err(|error| format!("cannot write {}: {error}", private.display()))?;
    std::fs::write(&public, public_pem)
        .map_err(|error| format!("cannot write {}: {error}", public.display()))?;
    Ok(format!(
        "wrote {} (private, keep it secret) and {} (public)",
        private.display(),
        public.display()
    ))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    crate::files::private()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(bytes)
}
