//! Protection mode through the gateway: only admin (and the core and CLI)
//! may change it, and a refused toggle leaves the state as it was.

use crate::helpers::*;

fn toggle(token: &'static str, slug_path: &'static str, protected: bool) -> RawRequest<'static> {
    let body = format!(r#"{{"protected": {protected}}}"#);
    RawRequest::new("POST", slug_path)
        .token(token)
        .header("Content-Type", "application/json")
        .body(body.as_bytes())
}

#[tokio::test]
async fn a_manager_cannot_turn_protection_off_and_the_state_stays() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .send(&toggle(TOK_MANAGER, "/addons/core_ssh/security", false))
        .await;
    assert_refused(&response, 403, "manager toggle");
    assert_upstream_silent(&gateway, "manager toggle");
    assert!(gateway.mock.state().protected("core_ssh"));
}

#[tokio::test]
async fn an_admin_turns_protection_off_and_the_upstream_reports_it() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .send(&toggle(TOK_ADMIN, "/addons/core_ssh/security", false))
        .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(!gateway.mock.state().protected("core_ssh"));

    let info = gateway
        .send(&RawRequest::new("GET", "/addons/core_ssh/info").token(TOK_ADMIN))
        .await;
    assert_eq!(info.json()["data"]["protected"], false);
}

#[tokio::test]
async fn no_spelling_of_the_toggle_passes_for_a_non_admin() {
    let gateway = TestGateway::start().await;
    let spellings = [
        "/addons/self/security",
        "/addons/core_ssh/security/",
        "/addons/core_ssh%2Fsecurity",
        "/addons/core_ssh/security;x=1",
        "/addons/core_ssh/%73ecurity",
        "/addons/self/../core_ssh/security",
        "/addons/self/./security",
        "/v2/apps/core_ssh/security",
        "/v2/apps/self/security",
    ];
    for token in [
        TOK_DEFAULT,
        TOK_NOAPI,
        TOK_HA,
        TOK_BACKUP,
        TOK_MANAGER,
        TOK_OBSERVER,
        TOK_UNKNOWN,
    ] {
        for path in spellings {
            let response = gateway.send(&toggle(token, path, false)).await;
            assert!(
                [400, 401, 403].contains(&response.status),
                "{path} with {}: {}",
                &token[..4],
                response.status
            );
        }
    }
    assert_upstream_silent(&gateway, "toggle spellings");
    assert!(gateway.mock.state().protected("core_ssh"));
    assert!(gateway.mock.state().protected("local_manager"));
}
