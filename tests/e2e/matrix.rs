//! The role × route matrix: every caller kind, every step of SPEC.md, v1 and
//! v2. Each row is data with a name; a forwarded row must reach the upstream
//! unchanged, a refused one must not reach it at all.

use crate::helpers::*;

/// What a row expects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Reaches the upstream with the same method, path, query and body.
    Forwarded,
    /// Answered by the gateway with this status; the upstream sees nothing.
    Refused(u16),
}
use Expect::*;

/// Which header carries the token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    Supervisor,
    Hassio,
    Bearer,
}

pub(crate) struct Row {
    name: String,
    token: Option<&'static str>,
    pub(crate) via: Via,
    method: &'static str,
    target: &'static str,
    body: &'static [u8],
    expect: Expect,
}

fn row(
    name: &str,
    token: Option<&'static str>,
    method: &'static str,
    target: &'static str,
    expect: Expect,
) -> Row {
    Row {
        name: name.to_owned(),
        token,
        via: Via::Supervisor,
        method,
        target,
        body: b"",
        expect,
    }
}

const ROLES: [(&str, &str); 5] = [
    ("default", TOK_DEFAULT),
    ("homeassistant", TOK_HA),
    ("backup", TOK_BACKUP),
    ("manager", TOK_MANAGER),
    ("admin", TOK_ADMIN),
];

/// Role-table routes and the roles that reach them (all with hassio_api).
const ROLE_ROUTES: &[(&str, &str, &[&str])] = &[
    (
        "GET",
        "/os/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    (
        "GET",
        "/addons/core_ssh/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    (
        "GET",
        "/homeassistant/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    ("GET", "/backups", &["backup", "manager", "admin"]),
    ("POST", "/backups/new/full", &["backup", "manager", "admin"]),
    ("DELETE", "/backups/abc123", &["backup", "manager", "admin"]),
    ("GET", "/core/stats", &["homeassistant", "manager", "admin"]),
    (
        "POST",
        "/core/restart",
        &["homeassistant", "manager", "admin"],
    ),
    (
        "POST",
        "/homeassistant/restart",
        &["homeassistant", "manager", "admin"],
    ),
    ("GET", "/addons", &["manager", "admin"]),
    ("POST", "/addons/reload", &["manager", "admin"]),
    ("POST", "/addons/core_ssh/restart", &["manager", "admin"]),
    ("POST", "/addons/self/update", &["manager", "admin"]),
    ("POST", "/addons/core_ssh/security", &["admin"]),
    ("POST", "/addons/self/security", &["admin"]),
    ("POST", "/addons/core_ssh/security/", &["admin"]),
    (
        "GET",
        "/audio/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    ("POST", "/audio/volume/output", &["manager", "admin"]),
    ("DELETE", "/auth/cache", &["manager", "admin"]),
    ("GET", "/auth/list", &["admin"]),
    ("POST", "/auth/reset", &["admin"]),
    ("GET", "/available_updates", &["manager", "admin"]),
    ("POST", "/refresh_updates", &["manager", "admin"]),
    ("POST", "/reload_updates", &["admin"]),
    ("POST", "/cli/update", &["manager", "admin"]),
    ("POST", "/dns/restart", &["manager", "admin"]),
    ("GET", "/docker/registries", &["manager", "admin"]),
    (
        "GET",
        "/jobs/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    ("POST", "/jobs/reset", &["manager", "admin"]),
    ("GET", "/hardware/audio", &["manager", "admin"]),
    ("POST", "/host/reboot", &["manager", "admin"]),
    ("GET", "/mounts", &["manager", "admin"]),
    ("POST", "/multicast/restart", &["manager", "admin"]),
    ("POST", "/network/reload", &["manager", "admin"]),
    ("POST", "/observer/update", &["manager", "admin"]),
    ("POST", "/os/datadisk/move", &["manager", "admin"]),
    ("POST", "/os/datadisk/wipe", &["admin"]),
    ("POST", "/os/datadisk/wipe/", &["admin"]),
    ("POST", "/resolution/healthcheck", &["manager", "admin"]),
    ("POST", "/security/integrity", &["manager", "admin"]),
    ("GET", "/snapshots", &["manager", "admin"]),
    ("GET", "/store", &["manager", "admin"]),
    ("POST", "/store/reload", &["manager", "admin"]),
    ("POST", "/supervisor/update", &["manager", "admin"]),
    ("GET", "/supervisor/logs", &["manager", "admin"]),
    ("POST", "/made/up/route", &["admin"]),
    ("GET", "/", &["admin"]),
    // v2
    (
        "GET",
        "/v2/os/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    (
        "GET",
        "/v2/apps/core_ssh/info",
        &["default", "homeassistant", "backup", "manager", "admin"],
    ),
    ("GET", "/v2/backups", &["backup", "manager", "admin"]),
    (
        "POST",
        "/v2/backups/new/partial",
        &["backup", "manager", "admin"],
    ),
    (
        "POST",
        "/v2/core/restart",
        &["homeassistant", "manager", "admin"],
    ),
    ("GET", "/v2/apps", &["manager", "admin"]),
    ("POST", "/v2/apps/core_ssh/restart", &["manager", "admin"]),
    ("POST", "/v2/apps/core_ssh/security", &["admin"]),
    ("POST", "/v2/apps/self/security", &["admin"]),
    ("POST", "/v2/apps/reload", &["admin"]),
    ("POST", "/v2/reload_updates", &["manager", "admin"]),
    ("POST", "/v2/refresh_updates", &["admin"]),
    ("GET", "/v2/available_updates", &["admin"]),
    ("GET", "/v2/snapshots", &["admin"]),
    ("POST", "/v2/os/datadisk/wipe", &["admin"]),
    ("POST", "/v2/os/datadisk/move", &["manager", "admin"]),
    ("GET", "/v2/store", &["manager", "admin"]),
    ("POST", "/v2/supervisor/reload", &["manager", "admin"]),
    ("DELETE", "/v2/auth/cache", &["manager", "admin"]),
];

fn role_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for &(method, target, allowed) in ROLE_ROUTES {
        for (role, token) in ROLES {
            let expect = if allowed.contains(&role) {
                Forwarded
            } else {
                Refused(403)
            };
            rows.push(row(
                &format!("{role} {method} {target}"),
                Some(token),
                method,
                target,
                expect,
            ));
        }
    }
    rows
}

/// Steps 3 to 8 outside the role table, for the callers they concern.
fn step_rows() -> Vec<Row> {
    let anonymous = None;
    vec![
        // step 3: always denied, whoever asks
        row(
            "admin hassio loopback",
            Some(TOK_ADMIN),
            "GET",
            "/core/api/hassio/supervisor/info",
            Refused(403),
        ),
        row(
            "core hassio_auth",
            Some(TOK_CORE),
            "POST",
            "/core/api/hassio_auth",
            Refused(403),
        ),
        row(
            "ha hassio alone",
            Some(TOK_HA),
            "GET",
            "/homeassistant/api/hassio",
            Refused(403),
        ),
        row(
            "cli v2 hassio",
            Some(TOK_CLI),
            "GET",
            "/v2/core/api/hassio/x",
            Refused(403),
        ),
        row(
            "anonymous hassio",
            anonymous,
            "GET",
            "/core/api/hassio",
            Refused(403),
        ),
        // step 4: public
        row(
            "anonymous ping",
            anonymous,
            "GET",
            "/supervisor/ping",
            Forwarded,
        ),
        row(
            "anonymous ingress",
            anonymous,
            "GET",
            "/ingress/abc123/index.html",
            Forwarded,
        ),
        row(
            "anonymous v2 ingress",
            anonymous,
            "GET",
            "/v2/ingress/abc123/",
            Forwarded,
        ),
        row(
            "anonymous asset",
            anonymous,
            "GET",
            "/app/frontend_latest/entry.js",
            Forwarded,
        ),
        row(
            "anonymous asset map",
            anonymous,
            "GET",
            "/app/x.js.map",
            Forwarded,
        ),
        row(
            "anonymous asset wrong ending",
            anonymous,
            "GET",
            "/app/x.html",
            Refused(401),
        ),
        row(
            "anonymous addon logo",
            anonymous,
            "GET",
            "/addons/core_ssh/logo",
            Forwarded,
        ),
        row(
            "anonymous store icon",
            anonymous,
            "GET",
            "/store/addons/core_ssh/icon",
            Forwarded,
        ),
        row(
            "anonymous v2 store icon",
            anonymous,
            "GET",
            "/v2/store/apps/core_ssh/icon",
            Forwarded,
        ),
        row(
            "anonymous v2 ping is not public",
            anonymous,
            "GET",
            "/v2/supervisor/ping",
            Refused(401),
        ),
        // step 4: the v1 core proxy needs an add-on with homeassistant_api
        row(
            "ha addon core api",
            Some(TOK_HA),
            "GET",
            "/core/api/states",
            Forwarded,
        ),
        row(
            "ha addon core api root",
            Some(TOK_HA),
            "GET",
            "/core/api/",
            Forwarded,
        ),
        row(
            "ha addon homeassistant api",
            Some(TOK_HA),
            "POST",
            "/homeassistant/api/services/light/turn_on",
            Forwarded,
        ),
        row(
            "admin without homeassistant_api",
            Some(TOK_ADMIN),
            "GET",
            "/core/api/states",
            Refused(401),
        ),
        row(
            "anonymous core api",
            anonymous,
            "GET",
            "/core/api/states",
            Refused(401),
        ),
        row(
            "core token core api",
            Some(TOK_CORE),
            "GET",
            "/core/api/states",
            Refused(401),
        ),
        row(
            "noapi websocket",
            Some(TOK_NOAPI),
            "GET",
            "/core/websocket",
            Refused(401),
        ),
        row(
            "v2 core api via the table",
            Some(TOK_HA),
            "GET",
            "/v2/core/api/states",
            Forwarded,
        ),
        row(
            "v2 core api for default",
            Some(TOK_DEFAULT),
            "GET",
            "/v2/core/api/states",
            Refused(403),
        ),
        row(
            "v2 core api for admin without api",
            Some(TOK_ADMIN),
            "GET",
            "/v2/core/api/states",
            Refused(401),
        ),
        // step 5: no token, unknown token
        row("anonymous info", anonymous, "GET", "/info", Refused(401)),
        row(
            "anonymous options",
            anonymous,
            "OPTIONS",
            "/addons/core_ssh/security",
            Refused(401),
        ),
        row(
            "unknown token",
            Some(TOK_UNKNOWN),
            "GET",
            "/info",
            Refused(403),
        ),
        row(
            "unknown token on a public path",
            Some(TOK_UNKNOWN),
            "GET",
            "/supervisor/ping",
            Forwarded,
        ),
        // step 6: core only
        row(
            "core sys_options",
            Some(TOK_CORE),
            "POST",
            "/addons/core_ssh/sys_options",
            Forwarded,
        ),
        row(
            "core v2 sys_options",
            Some(TOK_CORE),
            "POST",
            "/v2/apps/core_ssh/sys_options",
            Forwarded,
        ),
        row(
            "cli sys_options",
            Some(TOK_CLI),
            "POST",
            "/addons/core_ssh/sys_options",
            Refused(403),
        ),
        row(
            "admin sys_options",
            Some(TOK_ADMIN),
            "POST",
            "/addons/core_ssh/sys_options",
            Refused(403),
        ),
        row(
            "manager sys_options trailing slash",
            Some(TOK_MANAGER),
            "POST",
            "/addons/core_ssh/sys_options/",
            Refused(403),
        ),
        // step 7: plugins and core
        row(
            "core anything",
            Some(TOK_CORE),
            "POST",
            "/os/datadisk/wipe",
            Forwarded,
        ),
        row(
            "core toggle",
            Some(TOK_CORE),
            "POST",
            "/addons/core_ssh/security",
            Forwarded,
        ),
        row(
            "cli anything",
            Some(TOK_CLI),
            "POST",
            "/host/reboot",
            Forwarded,
        ),
        row(
            "cli toggle",
            Some(TOK_CLI),
            "POST",
            "/v2/apps/core_ssh/security",
            Forwarded,
        ),
        row(
            "observer info",
            Some(TOK_OBSERVER),
            "GET",
            "/supervisor/info",
            Forwarded,
        ),
        row(
            "observer deep info",
            Some(TOK_OBSERVER),
            "GET",
            "/addons/core_ssh/info",
            Forwarded,
        ),
        row(
            "observer logs",
            Some(TOK_OBSERVER),
            "GET",
            "/supervisor/logs",
            Refused(403),
        ),
        row(
            "observer restart",
            Some(TOK_OBSERVER),
            "POST",
            "/core/restart",
            Refused(403),
        ),
        // step 8: self-service for every add-on, even without hassio_api
        row(
            "noapi self info",
            Some(TOK_NOAPI),
            "GET",
            "/addons/self/info",
            Forwarded,
        ),
        row(
            "noapi self options",
            Some(TOK_NOAPI),
            "POST",
            "/addons/self/options",
            Forwarded,
        ),
        row(
            "noapi self options config",
            Some(TOK_NOAPI),
            "GET",
            "/addons/self/options/config",
            Forwarded,
        ),
        row(
            "noapi root info",
            Some(TOK_NOAPI),
            "GET",
            "/info",
            Forwarded,
        ),
        row(
            "noapi services",
            Some(TOK_NOAPI),
            "GET",
            "/services",
            Forwarded,
        ),
        row(
            "noapi service mqtt",
            Some(TOK_NOAPI),
            "POST",
            "/services/mqtt",
            Forwarded,
        ),
        row(
            "noapi discovery",
            Some(TOK_NOAPI),
            "POST",
            "/discovery",
            Forwarded,
        ),
        row(
            "noapi v2 self info",
            Some(TOK_NOAPI),
            "GET",
            "/v2/apps/self/info",
            Forwarded,
        ),
        row(
            "noapi v2 info",
            Some(TOK_NOAPI),
            "GET",
            "/v2/info",
            Forwarded,
        ),
        row(
            "noapi self security",
            Some(TOK_NOAPI),
            "POST",
            "/addons/self/security",
            Refused(403),
        ),
        row(
            "noapi self update",
            Some(TOK_NOAPI),
            "POST",
            "/addons/self/update",
            Refused(403),
        ),
        row(
            "noapi self two segments",
            Some(TOK_NOAPI),
            "GET",
            "/addons/self/logs/follow",
            Refused(403),
        ),
        row(
            "noapi other info",
            Some(TOK_NOAPI),
            "GET",
            "/os/info",
            Refused(403),
        ),
        row(
            "noapi other addon",
            Some(TOK_NOAPI),
            "GET",
            "/addons/core_ssh/info",
            Refused(403),
        ),
        // step 8: auth_api
        row(
            "auth_api addon auth",
            Some(TOK_AUTH),
            "POST",
            "/auth",
            Forwarded,
        ),
        row(
            "auth_api addon v2 auth",
            Some(TOK_AUTH),
            "GET",
            "/v2/auth",
            Forwarded,
        ),
        row(
            "admin without auth_api",
            Some(TOK_ADMIN),
            "POST",
            "/auth",
            Refused(403),
        ),
        row(
            "default without auth_api",
            Some(TOK_DEFAULT),
            "POST",
            "/auth",
            Refused(403),
        ),
        row("core auth", Some(TOK_CORE), "POST", "/auth", Forwarded),
        // the methods
        row(
            "default head of a download",
            Some(TOK_DEFAULT),
            "HEAD",
            "/backups/abc123/download",
            Refused(403),
        ),
        row(
            "backup head of a download",
            Some(TOK_BACKUP),
            "HEAD",
            "/backups/abc123/download",
            Forwarded,
        ),
        row(
            "manager lower-case post",
            Some(TOK_MANAGER),
            "post",
            "/os/datadisk/wipe",
            Refused(405),
        ),
        row(
            "manager invented method",
            Some(TOK_MANAGER),
            "WIPE",
            "/os/datadisk/wipe",
            Refused(405),
        ),
        row(
            "admin trace",
            Some(TOK_ADMIN),
            "TRACE",
            "/info",
            Refused(405),
        ),
    ]
}

/// The three token headers, and the Bearer scheme only.
fn header_rows() -> Vec<Row> {
    let via = |name: &str, via: Via, token: &'static str, expect: Expect| Row {
        via,
        ..row(name, Some(token), "GET", "/backups", expect)
    };
    vec![
        via(
            "backup via X-Supervisor-Token",
            Via::Supervisor,
            TOK_BACKUP,
            Forwarded,
        ),
        via(
            "backup via X-Hassio-Key",
            Via::Hassio,
            TOK_BACKUP,
            Forwarded,
        ),
        via("backup via Bearer", Via::Bearer, TOK_BACKUP, Forwarded),
        via("default via Bearer", Via::Bearer, TOK_DEFAULT, Refused(403)),
        via(
            "default via X-Hassio-Key",
            Via::Hassio,
            TOK_DEFAULT,
            Refused(403),
        ),
    ]
}

/// Every row of the matrix: roles, steps and token headers.
pub(crate) fn every_row() -> Vec<Row> {
    let mut rows = role_rows();
    rows.extend(step_rows());
    rows.extend(header_rows());
    rows
}

pub(crate) fn request_for(row: &Row) -> RawRequest<'static> {
    let request = RawRequest::new(row.method, row.target).body(row.body);
    let Some(token) = row.token else {
        return request;
    };
    match row.via {
        Via::Supervisor => request.header("X-Supervisor-Token", token),
        Via::Hassio => request.header("X-Hassio-Key", token),
        Via::Bearer => request.header("Authorization", format!("Bearer {token}")),
    }
}

async fn run_rows(rows: Vec<Row>) {
    let gateway = TestGateway::start().await;
    let mut failures = Vec::new();
    for row in &rows {
        let response = gateway.send(&request_for(row)).await;
        let seen = gateway.upstream_saw();
        if let Err(problem) = judge(row, &response, &seen) {
            failures.push(format!("{}: {problem}", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn judge(
    row: &Row,
    response: &RawResponse,
    seen: &[supervisor_gateway::mock_upstream::Recorded],
) -> Result<(), String> {
    match row.expect {
        Forwarded => {
            let [one] = seen else {
                return Err(format!(
                    "expected one upstream request, saw {} (status {})",
                    seen.len(),
                    response.status
                ));
            };
            let (path, query) = match row.target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (row.target, None),
            };
            let same = one.method == row.method
                && one.path == path
                && one.query.as_deref() == query
                && one.body_len == row.body.len() as u64;
            if !same {
                return Err(format!(
                    "upstream saw {} {} {:?} ({} bytes)",
                    one.method, one.path, one.query, one.body_len
                ));
            }
            if response.status == 401 || response.status == 403 {
                return Err(format!("forwarded but answered {}", response.status));
            }
            Ok(())
        }
        Refused(status) => {
            if !seen.is_empty() {
                return Err(format!(
                    "refused row reached the upstream {} times",
                    seen.len()
                ));
            }
            if response.status != status {
                return Err(format!(
                    "status {} instead of {status}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            }
            if row.method == "HEAD" {
                return Ok(());
            }
            let json: serde_json::Value =
                serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
            if json["result"] != "error" {
                return Err(format!("not the error envelope: {json}"));
            }
            if status == 401 && response.header("www-authenticate") != Some("Bearer") {
                return Err("401 without WWW-Authenticate: Bearer".into());
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn every_role_reaches_exactly_its_routes_v1_and_v2() {
    run_rows(role_rows()).await;
}

#[tokio::test]
async fn each_step_of_the_spec_settles_the_requests_it_owns() {
    run_rows(step_rows()).await;
}

#[tokio::test]
async fn each_token_header_identifies_the_caller() {
    run_rows(header_rows()).await;
}

#[tokio::test]
async fn query_and_body_reach_the_upstream_unchanged() {
    let gateway = TestGateway::start().await;
    let body = br#"{"name":"nightly","addons":["core_ssh"]}"#;
    let request = RawRequest::new("POST", "/backups/new/partial?wait=true&x=%20y")
        .token(TOK_BACKUP)
        .header("Content-Type", "application/json")
        .body(body);
    let response = gateway.send(&request).await;
    assert_eq!(response.status, 200);
    let seen = gateway.upstream_saw();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/backups/new/partial");
    assert_eq!(seen[0].query.as_deref(), Some("wait=true&x=%20y"));
    assert_eq!(seen[0].body_head, body);
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"application/json"[..])
    );
}
