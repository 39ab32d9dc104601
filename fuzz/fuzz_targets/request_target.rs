//! Fuzzes steps 1 to 9 with a request target and header lines taken from
//! arbitrary bytes: nothing may panic, and every allowed target must be
//! canonical (its forwarded form parses back to exactly the decided path).

#![no_main]

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

use supervisor_gateway::caller::{presented_token, Caller, Callers, TokenDigest};
use supervisor_gateway::config::{Addon, Role};
use supervisor_gateway::decision::decide;
use supervisor_gateway::table::Table;
use supervisor_gateway::target::{self, encode_path};

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::builtin().expect("the default table loads"))
}

fn callers() -> &'static Callers {
    static CALLERS: OnceLock<Callers> = OnceLock::new();
    CALLERS.get_or_init(|| {
        let mut callers = Callers::default();
        callers.insert(TokenDigest::of(b"core"), Caller::HomeAssistant);
        callers.insert(TokenDigest::of(b"observer"), Caller::Observer);
        for (token, role) in [
            ("default", Role::Default),
            ("manager", Role::Manager),
            ("admin", Role::Admin),
        ] {
            let addon = Addon {
                slug: token.into(),
                hassio_api: true,
                role,
                homeassistant_api: true,
                auth_api: false,
            };
            callers.insert(
                TokenDigest::of(token.as_bytes()),
                Caller::Addon(Arc::new(addon)),
            );
        }
        callers
    })
}

/// First line: method and target; every further line: `name: value`.
fn request(data: &[u8]) -> Option<(Method, Uri, HeaderMap)> {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next()?;
    let space = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let uri = Uri::try_from(&first[space + 1..]).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        headers.append(name, value);
    }
    Some((method, uri, headers))
}

fuzz_target!(|data: &[u8]| {
    let Some((method, uri, headers)) = request(data) else {
        return;
    };
    let Ok(target) = target::parse(&method, &uri) else {
        return;
    };
    let caller = match presented_token(&headers) {
        Ok(token) => callers().identify(token),
        Err(_) => return,
    };
    let decision = decide(table(), &caller, &method, &target.path);
    if decision.allowed() {
        assert_eq!(target.forward_path, encode_path(&target.path));
        let forwarded: Uri = target
            .forward_path
            .parse()
            .expect("the forwarded path is a valid URI path");
        let again = target::parse(&method, &forwarded).expect("the forwarded path is accepted");
        assert_eq!(
            again.path, target.path,
            "the forwarded path decodes to the decided path"
        );
    }
});
