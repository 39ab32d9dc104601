//! The action routes the mock upstream answers: method and path shape of each
//! non-GET endpoint of supervisor-api.md, in v1 words, matched the way the
//! real aiohttp router matches (case-sensitive, whole segments).

/// Every action route, as `(methods, path)` in v1 words.
///
/// A path segment `{name}` matches any one non-empty segment; a segment
/// `a|b` matches either word exactly; anything else matches only itself,
/// case and all. `methods` may list several, split by `|`. The v2 form of
/// each route (`/v2` in front, `apps` for `addons`) is matched by the caller
/// turning the path into v1 words first, as is `/homeassistant` for `/core`.
///
/// Deliberate limits: segments are compared as received, without
/// percent-decoding, so `%73ecurity` is not `security` here although the
/// real router decodes first; and every area answers under `/v2`, where the
/// real Supervisor has only apps, backups and store.
const ACTIONS: &[(&str, &str)] = &[
    // root
    ("POST", "/reload_updates"),
    ("POST", "/refresh_updates"),
    // supervisor
    ("POST", "/supervisor/update|reload|restart|options|repair"),
    // add-ons
    ("POST", "/addons/reload"),
    (
        "POST",
        "/addons/{slug}/start|stop|restart|rebuild|uninstall|update|install",
    ),
    ("POST", "/addons/{slug}/options|sys_options|stdin|security"),
    ("POST", "/addons/{slug}/options/validate"),
    // store
    ("POST", "/store/reload"),
    ("POST", "/store/addons/{slug}/install|update"),
    ("POST", "/store/repositories"),
    ("DELETE", "/store/repositories/{repository}"),
    // core (also reached as /homeassistant)
    (
        "POST",
        "/core/update|restart|stop|start|check|rebuild|options",
    ),
    // backups
    ("POST", "/backups/new/full|partial|upload"),
    ("POST", "/backups/{slug}/restore/full|partial"),
    ("POST", "/backups/options|reload|freeze|thaw"),
    ("DELETE", "/backups/{slug}"),
    // host
    ("POST", "/host/reboot|shutdown|reload|options"),
    ("POST", "/host/service/{service}/start|stop|reload"),
    // os
    ("POST", "/os/update|boot-slot"),
    ("POST", "/os/config/sync"),
    ("POST", "/os/datadisk/move|wipe"),
    ("POST", "/os/boards/{board}"),
    // network
    ("POST", "/network/reload"),
    ("POST", "/network/interface/{interface}/update"),
    ("POST", "/network/interface/{interface}/vlan/{vlan}"),
    // plugins
    ("POST", "/dns|audio|cli|multicast|observer/update|restart"),
    ("POST", "/dns/options|reset"),
    ("POST", "/audio/reload|profile"),
    ("POST", "/audio/volume|mute/{source}"),
    ("POST", "/audio/volume|mute/{source}/application"),
    ("POST", "/audio/default/{source}"),
    // auth
    ("POST", "/auth"),
    ("POST", "/auth/reset"),
    ("DELETE", "/auth/cache"),
    // services and discovery
    ("POST|DELETE", "/services/{service}"),
    ("POST", "/discovery"),
    ("DELETE", "/discovery/{uuid}"),
    // jobs, resolution, security
    ("POST", "/jobs/options|reset"),
    ("POST", "/resolution/healthcheck"),
    ("POST|DELETE", "/resolution/suggestion/{suggestion}"),
    ("DELETE", "/resolution/issue/{issue}"),
    ("POST", "/resolution/check/{check}/options|run"),
    ("POST", "/security/options|integrity"),
    // mounts, docker, ingress
    ("POST", "/mounts"),
    ("POST", "/mounts/options"),
    ("PUT|DELETE", "/mounts/{mount}"),
    ("POST", "/mounts/{mount}/reload"),
    ("POST", "/docker/registries"),
    ("DELETE", "/docker/registries/{hostname}"),
    ("POST", "/ingress/session|validate_session"),
];

/// The methods the action routes accept on `segments` (v1 words, no empty
/// segment), in table order without repeats; empty for a path no action
/// route has.
pub(super) fn action_methods(segments: &[&str]) -> Vec<&'static str> {
    let mut methods = Vec::new();
    for (listed, path) in ACTIONS {
        if !shape_matches(path, segments) {
            continue;
        }
        for method in listed.split('|') {
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
    }
    methods
}

/// Whether `segments` has the shape `path` describes.
fn shape_matches(path: &str, segments: &[&str]) -> bool {
    let shape: Vec<&str> = path.split('/').skip(1).collect();
    shape.len() == segments.len()
        && shape
            .iter()
            .zip(segments)
            .all(|(want, have)| segment_matches(want, have))
}

fn segment_matches(want: &str, have: &str) -> bool {
    if want.starts_with('{') && want.ends_with('}') {
        return !have.is_empty();
    }
    want.split('|').any(|word| word == have)
}

#[cfg(test)]
mod tests {
    use super::{action_methods, ACTIONS};

    #[test]
    fn every_row_is_an_absolute_path_of_whole_segments_and_action_methods() {
        for (methods, path) in ACTIONS {
            assert!(path.starts_with('/'), "{path}");
            for segment in path.split('/').skip(1) {
                let placeholder = segment.starts_with('{') || segment.ends_with('}');
                if placeholder {
                    assert!(segment.len() > 2 && !segment.contains('|'), "{path}");
                    assert!(segment.starts_with('{') && segment.ends_with('}'), "{path}");
                } else {
                    assert!(segment.split('|').all(|word| !word.is_empty()), "{path}");
                }
            }
            let known = ["POST", "PUT", "DELETE"];
            assert!(methods.split('|').all(|m| known.contains(&m)), "{path}");
        }
    }

    #[test]
    fn a_placeholder_takes_exactly_one_non_empty_segment() {
        assert_eq!(action_methods(&["services", "mqtt"]), ["POST", "DELETE"]);
        assert!(action_methods(&["services", ""]).is_empty());
        assert!(action_methods(&["services", "mqtt", "extra"]).is_empty());
        assert!(action_methods(&["services"]).is_empty());
    }

    #[test]
    fn methods_of_every_matching_row_are_merged_in_table_order() {
        let methods = action_methods(&["mounts", "options"]);
        assert_eq!(methods, ["POST", "PUT", "DELETE"]);
    }
}
