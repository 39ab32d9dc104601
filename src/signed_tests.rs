use super::*;
use crate::config::Role;

const NOW: u64 = 1_800_000_000;

fn addon(slug: &str, role: Role) -> Arc<Addon> {
    Arc::new(Addon {
        slug: slug.to_owned(),
        hassio_api: true,
        role,
        homeassistant_api: false,
        auth_api: false,
    })
}

fn ed_key(kid: &str, may_sign: bool) -> (Key, String) {
    let (private, public) = generate_ed25519().expect("key pair");
    let key = Key::ed25519(kid, public.as_bytes(), Some(private.as_bytes()), may_sign)
        .expect("ed25519 key");
    (key, public)
}

fn hmac_key(kid: &str) -> Key {
    Key::hmac(kid, b"0123456789abcdef0123456789abcdef-hmac", true).expect("hmac key")
}

fn tokens(keys: Vec<Key>, revocations: Revocations) -> SignedTokens {
    tokens_with_leeway(keys, revocations, 30)
}

fn tokens_with_leeway(keys: Vec<Key>, revocations: Revocations, leeway: u64) -> SignedTokens {
    let addons = [
        addon("backup_addon", Role::Backup),
        addon("plain", Role::Default),
    ];
    SignedTokens::new(
        keys,
        Expected {
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            leeway: Duration::from_secs(leeway),
        },
        Some(revocations),
        None,
        Vec::new(),
        &addons,
    )
}

/// Signs arbitrary claims with `key`, as an attacker or another issuer would.
fn sign_claims(key: &Key, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.algorithm.jwt());
    header.kid = Some(key.kid.clone());
    let signing = key.signing.as_ref().expect("signing key");
    jsonwebtoken::encode(&header, claims, signing).expect("encode")
}

fn claims(sub: &str, iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "iat": iat, "exp": exp, "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE, "jti": "jti-1",
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_claims(sub: &str) -> serde_json::Value {
    let now = now();
    claims(sub, now, now + 600)
}

#[test]
fn each_algorithm_round_trips_to_the_configured_addon() {
    let (ed, _) = ed_key("ed", true);
    for key in [ed, hmac_key("hs")] {
        let kid = key.kid.clone();
        let signed = tokens(vec![key], Revocations::default());
        let token = signed
            .issue("backup_addon", Duration::from_secs(600), Some(&kid), now())
            .expect("issued");
        assert!(looks_signed(token.as_bytes()));
        let addon = signed.verify(&token, now()).expect("verifies");
        assert_eq!(
            (addon.slug.as_str(), addon.role),
            ("backup_addon", Role::Backup)
        );
    }
}

#[test]
fn expiry_is_checked_with_the_leeway_and_without() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    let key = &signed.keys[0];
    let now = now();
    let within_leeway = sign_claims(key, &claims("plain", now - 100, now - 10));
    assert!(
        signed.verify(&within_leeway, now).is_ok(),
        "10 s late, 30 s leeway"
    );
    let past_leeway = sign_claims(key, &claims("plain", now - 100, now - 31));
    assert_eq!(signed.verify(&past_leeway, now), Err(Rejection::Expired));

    let strict = tokens_with_leeway(vec![hmac_key("hs")], Revocations::default(), 0);
    assert_eq!(strict.verify(&within_leeway, now), Err(Rejection::Expired));
}

#[test]
fn a_token_not_valid_yet_is_refused() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    let now = now();
    let mut later = claims("plain", now, now + 600);
    later["nbf"] = (now + 300).into();
    let token = sign_claims(&signed.keys[0], &later);
    assert_eq!(signed.verify(&token, now), Err(Rejection::NotYetValid));
    let from_the_future = sign_claims(&signed.keys[0], &claims("plain", now + 300, now + 600));
    assert_eq!(
        signed.verify(&from_the_future, now),
        Err(Rejection::NotYetValid)
    );
}

#[test]
fn wrong_issuer_audience_or_missing_claims_are_invalid() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    let key = &signed.keys[0];
    for (claim, value) in [
        ("iss", serde_json::json!("someone-else")),
        ("aud", serde_json::json!("another-api")),
        ("aud", serde_json::json!(["another-api"])),
    ] {
        let mut wrong = now_claims("plain");
        wrong[claim] = value.clone();
        let token = sign_claims(key, &wrong);
        assert_eq!(
            signed.verify(&token, now()),
            Err(Rejection::Invalid),
            "{claim}: {value}"
        );
    }
    for missing in ["exp", "iat", "sub", "iss", "aud", "jti"] {
        let mut partial = now_claims("plain");
        partial.as_object_mut().expect("object").remove(missing);
        let token = sign_claims(key, &partial);
        assert_eq!(
            signed.verify(&token, now()),
            Err(Rejection::Invalid),
            "no {missing}"
        );
    }
}

#[test]
fn an_unknown_kid_a_missing_kid_or_an_unknown_addon_is_invalid() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    let other = tokens(vec![hmac_key("elsewhere")], Revocations::default());
    let token = sign_claims(&other.keys[0], &now_claims("plain"));
    assert_eq!(signed.verify(&token, now()), Err(Rejection::Invalid));

    let no_kid = {
        let header = Header::new(Algorithm::HS256);
        let key = signed.keys[0].signing.as_ref().expect("key");
        jsonwebtoken::encode(&header, &now_claims("plain"), key).expect("encode")
    };
    assert_eq!(signed.verify(&no_kid, now()), Err(Rejection::Invalid));

    let stranger = sign_claims(&signed.keys[0], &now_claims("not_configured"));
    assert_eq!(signed.verify(&stranger, now()), Err(Rejection::Invalid));
    assert!(matches!(
        signed.issue("not_configured", Duration::from_secs(60), None, now()),
        Err(IssueError::UnknownAddon(_))
    ));
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let (ed, _) = ed_key("ed", true);
    let signed = tokens(vec![ed], Revocations::default());
    let token = signed
        .issue("plain", Duration::from_secs(600), None, now())
        .expect("issued");
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = now_claims("backup_addon");
    forged["jti"] = "forged".into();
    let payload = b64(forged.to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_eq!(signed.verify(&tampered, now()), Err(Rejection::Invalid));
}

#[test]
fn alg_none_is_never_accepted() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    for alg in ["none", "None", "NONE"] {
        let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": "hs"});
        let body = now_claims("plain");
        for signature in ["", "AAAA"] {
            let token = format!(
                "{}.{}.{signature}",
                b64(header.to_string().as_bytes()),
                b64(body.to_string().as_bytes())
            );
            assert_eq!(
                signed.verify(&token, now()),
                Err(Rejection::Invalid),
                "{alg}"
            );
        }
    }
}

#[test]
fn an_hmac_token_keyed_with_the_ed25519_public_key_is_refused() {
    let (ed, public_pem) = ed_key("ed", true);
    let signed = tokens(vec![ed], Revocations::default());
    // The classic confusion: the attacker knows the public key and signs an
    // HS256 token with it as the secret, naming the Ed25519 key's kid.
    for secret in [
        public_pem.as_bytes().to_vec(),
        public_pem.trim().as_bytes().to_vec(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ed".into());
        let key = EncodingKey::from_secret(&secret).expect("secret");
        let token = jsonwebtoken::encode(&header, &now_claims("plain"), &key).expect("encode");
        assert_eq!(signed.verify(&token, now()), Err(Rejection::Invalid));
    }
    // And the reverse: an Ed25519 token under an HMAC key's kid.
    let (other_ed, _) = ed_key("hs", true);
    let hmac_side = tokens(vec![hmac_key("hs")], Revocations::default());
    let token = sign_claims(&other_ed, &now_claims("plain"));
    assert_eq!(hmac_side.verify(&token, now()), Err(Rejection::Invalid));
}

#[test]
fn a_role_claim_never_raises_the_configured_role() {
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    let mut claims = now_claims("plain");
    claims["role"] = "admin".into();
    claims["hassio_role"] = "admin".into();
    claims["hassio_api"] = true.into();
    claims["admin"] = true.into();
    let token = sign_claims(&signed.keys[0], &claims);
    let addon = signed.verify(&token, now()).expect("verifies");
    assert_eq!(addon.role, Role::Default);
}

#[test]
fn revocation_by_jti_and_by_addon() {
    let now = now();
    let revocations = Revocations {
        jti: vec!["jti-1".into()],
        issued_before: [("backup_addon".to_owned(), now - 50)]
            .into_iter()
            .collect(),
    };
    let signed = tokens(vec![hmac_key("hs")], revocations);
    let key = &signed.keys[0];
    let revoked = sign_claims(key, &claims("plain", now, now + 60));
    assert_eq!(signed.verify(&revoked, now), Err(Rejection::Revoked));

    let mut older = claims("backup_addon", now - 100, now + 60);
    older["jti"] = "jti-2".into();
    let mut newer = older.clone();
    newer["iat"] = (now - 10).into();
    assert_eq!(
        signed.verify(&sign_claims(key, &older), now),
        Err(Rejection::Revoked)
    );
    assert!(signed.verify(&sign_claims(key, &newer), now).is_ok());
}

#[test]
fn rotation_keeps_old_tokens_until_the_key_is_removed() {
    let (old, old_public) = ed_key("old", true);
    let before = tokens(vec![old], Revocations::default());
    let token = before
        .issue("plain", Duration::from_secs(600), None, now())
        .expect("issued by the old key");

    // Rotated: the old key stays for verifying only, a new one signs.
    let retired = Key::ed25519("old", old_public.as_bytes(), None, false).expect("public only");
    let (new, _) = ed_key("new", true);
    let rotated = tokens(vec![retired, new], Revocations::default());
    assert!(
        rotated.verify(&token, now()).is_ok(),
        "old tokens still verify"
    );
    assert!(matches!(
        rotated.issue("plain", Duration::from_secs(60), Some("old"), now()),
        Err(IssueError::NoKey(_))
    ));
    let fresh = rotated
        .issue("plain", Duration::from_secs(60), None, now())
        .expect("signed by the key that may sign");
    assert_eq!(
        jsonwebtoken::decode_header(&fresh)
            .expect("header")
            .kid
            .as_deref(),
        Some("new")
    );

    // Removed: its tokens no longer verify.
    let (only_new, _) = ed_key("new", true);
    let removed = tokens(vec![only_new], Revocations::default());
    assert_eq!(removed.verify(&token, now()), Err(Rejection::Invalid));
}

#[test]
fn a_key_that_may_sign_needs_its_private_half_and_hmac_secrets_are_long() {
    let (_, public) = generate_ed25519().expect("pair");
    let no_private = Key::ed25519("k", public.as_bytes(), None, true).expect_err("no private");
    assert_eq!(no_private.0, "private_key");
    let bad_public = Key::ed25519("k", b"not a pem", None, false).expect_err("bad public");
    assert_eq!(bad_public.0, "public_key");
    assert!(Key::hmac("k", b"short", true).is_err());
}

#[test]
fn tokens_that_mean_to_be_jwts_are_verified_and_others_are_not() {
    for token in [
        &b"eyJh.eyJz.c2ln"[..],
        b"eyJh.eyJz.",
        b"eyJh.eyJz.c2ln==",
        b"eyJh.b.c.d",
    ] {
        assert!(looks_signed(token), "{}", String::from_utf8_lossy(token));
    }
    for token in [&b"static-token"[..], b"eyJh.b", b"a.b.c", b"x.eyJ.c"] {
        assert!(!looks_signed(token), "{}", String::from_utf8_lossy(token));
    }
    // Malformed JWT-looking tokens are refused as invalid, not unknown.
    let signed = tokens(vec![hmac_key("hs")], Revocations::default());
    for token in ["eyJh.eyJz.", "eyJhbGciOiJub25lIn0.e30.", "eyJh.b.c.d"] {
        assert_eq!(
            signed.verify(token, now()),
            Err(Rejection::Invalid),
            "{token}"
        );
    }
}

#[test]
fn a_private_key_of_another_pair_is_refused() {
    let (private, _) = generate_ed25519().expect("pair");
    let (_, other_public) = generate_ed25519().expect("pair");
    let error = Key::ed25519("k", other_public.as_bytes(), Some(private.as_bytes()), true)
        .expect_err("mismatched pair");
    assert_eq!(error.0, "private_key");
}

#[test]
fn inspect_shows_header_and_claims_without_verifying() {
    let token = sign_claims(&hmac_key("hs"), &claims("plain", NOW, NOW + 60));
    let (header, claims) = inspect(&token).expect("decodes");
    assert_eq!(header["kid"], "hs");
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["sub"], "plain");
    assert_eq!(claims["exp"], NOW + 60);
    assert!(inspect("not-a-token").is_err());
    assert_eq!(inspect("  "), Err("no token given".to_owned()));
}

#[test]
fn lifetimes_parse_with_a_unit() {
    assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
    assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(12 * 3600)));
    assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_ttl("3650d"), Ok(Duration::from_secs(3650 * 86_400)));
    for bad in [
        "",
        "30",
        "d",
        "0d",
        "-1d",
        "1w",
        "3651d",
        "99999999999999999999d",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_revocation_file_round_trips_and_missing_or_empty_files_are_told_apart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("revoked.yaml");
    assert_eq!(Revocations::load(&path), Err(RevocationError::Missing));
    let list = Revocations {
        jti: vec!["abc".into(), "with: colon".into()],
        issued_before: [("plain".to_owned(), NOW)].into_iter().collect(),
    };
    list.store(&path).expect("stored");
    assert_eq!(Revocations::load(&path), Ok(list));
    for half in [
        Revocations {
            jti: vec!["only".into()],
            ..Revocations::default()
        },
        Revocations {
            issued_before: [("plain".to_owned(), NOW)].into_iter().collect(),
            ..Revocations::default()
        },
        Revocations::default(),
    ] {
        half.store(&path).expect("stored");
        assert_eq!(Revocations::load(&path), Ok(half));
    }
    let written = std::fs::read_to_string(&path).expect("read");
    let comments: String = written
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for broken in [
        "jti: [unclosed\n",
        "",
        "  \n",
        comments.as_str(),
        "{}\n",
        "issued_before: {}\n",
    ] {
        std::fs::write(&path, broken).expect("write");
        assert!(
            matches!(Revocations::load(&path), Err(RevocationError::Invalid(_))),
            "{broken:?} must not read as an empty list"
        );
    }
}

#[test]
fn concurrent_updates_of_the_revocation_file_all_land() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("revoked.yaml");
    let writers: Vec<_> = (0..8)
        .map(|index| {
            let path = path.clone();
            std::thread::spawn(move || {
                Revocations::update(&path, |list| list.jti.push(format!("jti-{index}")))
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("thread").expect("updated");
    }
    let list = Revocations::load(&path).expect("list");
    assert_eq!(list.jti.len(), 8, "{:?}", list.jti);
}

#[test]
fn a_token_pasted_into_the_revocation_file_is_not_echoed() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("revoked.yaml");
    let pasted = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.S3cr3tSignature";
    std::fs::write(&path, format!("jti: [a]\n{pasted}: 1\n")).expect("write");
    let Err(RevocationError::Invalid(message)) = Revocations::load(&path) else {
        panic!("refused as not a revocation list");
    };
    assert!(
        !message.contains("S3cr3t") && !message.contains("eyJ"),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
}

#[cfg(unix)]
#[test]
fn a_fifo_or_device_at_the_lock_name_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("revoked.yaml");
    crate::files::fifo(dir.path(), "revoked.yaml.lock");
    let (done, result) = std::sync::mpsc::channel();
    let fifo_case = path.clone();
    std::thread::spawn(move || done.send(Revocations::update(&fifo_case, |_| {})));
    let outcome = result
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("returned instead of waiting on the FIFO");
    assert!(outcome.is_err(), "a FIFO taken for a lock");
    std::fs::remove_file(dir.path().join("revoked.yaml.lock")).expect("remove");
    std::os::unix::fs::symlink("/dev/null", dir.path().join("revoked.yaml.lock")).expect("link");
    assert!(
        Revocations::update(&path, |_| {}).is_err(),
        "a device taken for a lock"
    );
    assert!(!path.exists(), "nothing written without the lock");
}

#[test]
fn an_issued_before_entry_that_is_no_slug_is_refused_unshown() {
    // `example` with a word joiner revoked nothing (helper 41).
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("revoked.yaml");
    for entry in ["\"plain\u{2060}\"", "\"plain \"", "\"S3cr3t MARK\""] {
        std::fs::write(&path, format!("jti: []\nissued_before:\n  {entry}: 1\n")).expect("write");
        let Err(RevocationError::Invalid(reason)) = Revocations::load(&path) else {
            panic!("{entry} should be refused");
        };
        assert!(reason.contains("not an add-on slug"), "{reason}");
        assert!(
            !reason.contains("plain") && !reason.contains("3cr3t"),
            "{reason}"
        );
    }
    // A slug of no configured add-on is read, and counted as revoking nothing.
    std::fs::write(
        &path,
        "jti: []\nissued_before:\n  plain: 1\n  gone_addon: 1\n",
    )
    .expect("write");
    let read = Revocations::load(&path).expect("a list of slugs");
    assert_eq!(
        tokens(vec![hmac_key("k")], read).revoked_unknown_addons(),
        1
    );
}
