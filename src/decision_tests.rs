use super::*;
use crate::config::{Addon, Role};

fn addon(role: Role, hassio_api: bool, homeassistant_api: bool, auth_api: bool) -> Caller {
    Caller::Addon(Arc::new(Addon {
        slug: "probe".into(),
        hassio_api,
        role,
        homeassistant_api,
        auth_api,
    }))
}

fn decided(caller: &Caller, method: Method, path: &str) -> (StatusCode, Step) {
    let table = Table::builtin().expect("default table");
    let decision = decide(&table, caller, &method, path);
    (decision.outcome.status(), decision.step)
}

#[test]
fn always_denied_paths_are_refused_even_to_the_core_and_admin() {
    for caller in [Caller::HomeAssistant, addon(Role::Admin, true, true, true)] {
        for path in [
            "/core/api/hassio",
            "/core/api/hassio_auth",
            "/v2/homeassistant/api/hassio/x",
        ] {
            assert_eq!(
                decided(&caller, Method::POST, path),
                (StatusCode::FORBIDDEN, Step::AlwaysDenied),
                "{path}"
            );
        }
    }
}

#[test]
fn the_v1_core_proxy_needs_homeassistant_api_and_skips_the_role_table() {
    let with_api = addon(Role::Default, false, true, false);
    assert_eq!(
        decided(&with_api, Method::GET, "/core/api/states").0,
        StatusCode::OK
    );
    let without = addon(Role::Admin, true, false, false);
    assert_eq!(
        decided(&without, Method::GET, "/core/api/states").0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        decided(&Caller::HomeAssistant, Method::GET, "/core/websocket").0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn the_v2_core_proxy_goes_through_the_role_table_first() {
    let default_with_api = addon(Role::Default, true, true, false);
    assert_eq!(
        decided(&default_with_api, Method::GET, "/v2/core/api/states").0,
        StatusCode::FORBIDDEN
    );
    let ha_with_api = addon(Role::Homeassistant, true, true, false);
    assert_eq!(
        decided(&ha_with_api, Method::GET, "/v2/core/api/states").0,
        StatusCode::OK
    );
    let ha_without = addon(Role::Homeassistant, true, false, false);
    assert_eq!(
        decided(&ha_without, Method::GET, "/v2/core/api/states").0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn sys_options_is_for_the_core_alone() {
    assert_eq!(
        decided(
            &Caller::HomeAssistant,
            Method::POST,
            "/addons/x/sys_options"
        )
        .0,
        StatusCode::OK
    );
    for caller in [Caller::Cli, addon(Role::Admin, true, true, true)] {
        assert_eq!(
            decided(&caller, Method::POST, "/addons/x/sys_options"),
            (StatusCode::FORBIDDEN, Step::CoreOnly)
        );
    }
}

#[test]
fn auth_needs_auth_api() {
    assert_eq!(
        decided(
            &addon(Role::Default, false, false, true),
            Method::POST,
            "/auth"
        )
        .0,
        StatusCode::OK
    );
    assert_eq!(
        decided(
            &addon(Role::Admin, true, false, false),
            Method::POST,
            "/auth"
        ),
        (StatusCode::FORBIDDEN, Step::Addons)
    );
}

#[test]
fn without_hassio_api_only_self_service_passes() {
    let no_api = addon(Role::Manager, false, false, false);
    assert_eq!(
        decided(&no_api, Method::GET, "/addons/self/info").0,
        StatusCode::OK
    );
    assert_eq!(
        decided(&no_api, Method::GET, "/os/info"),
        (StatusCode::FORBIDDEN, Step::Addons)
    );
}

#[test]
fn the_observer_reads_info_paths_only() {
    assert_eq!(
        decided(&Caller::Observer, Method::GET, "/host/info").0,
        StatusCode::OK
    );
    assert_eq!(
        decided(&Caller::Observer, Method::GET, "/host/logs"),
        (StatusCode::FORBIDDEN, Step::Plugins)
    );
}

#[test]
fn anonymous_and_unknown_callers_get_401_and_403() {
    assert_eq!(
        decided(&Caller::Anonymous, Method::GET, "/info"),
        (StatusCode::UNAUTHORIZED, Step::Caller)
    );
    assert_eq!(
        decided(&Caller::Unknown, Method::GET, "/info"),
        (StatusCode::FORBIDDEN, Step::Caller)
    );
    assert_eq!(
        decided(&Caller::Anonymous, Method::GET, "/supervisor/ping").0,
        StatusCode::OK
    );
}

#[test]
fn only_allowed_decisions_give_a_permit() {
    let table = Table::builtin().expect("default table");
    let target =
        crate::target::parse(&Method::GET, &"/os/info".parse().expect("uri")).expect("target");
    let denied = decide(
        &table,
        &addon(Role::Default, false, false, false),
        &Method::GET,
        "/os/info",
    );
    assert!(denied.permit(target.clone()).is_none());
    let allowed = decide(
        &table,
        &addon(Role::Default, true, false, false),
        &Method::GET,
        "/os/info",
    );
    assert_eq!(
        allowed
            .permit(target)
            .map(|p| p.target().path.clone())
            .as_deref(),
        Some("/os/info")
    );
}

#[test]
fn steps_are_numbered_as_in_the_spec() {
    assert_eq!(Step::HostileInput.number(), 1);
    assert_eq!(Step::Addons.number(), 8);
    assert_eq!(Step::DefaultDeny.number(), 9);
}
