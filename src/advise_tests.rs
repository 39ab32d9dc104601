use super::*;

fn entry(slug: &str, method: &str, path: &str, decision: &str) -> Entry {
    Entry {
        time: "2026-12-04T00:00:00.000Z".into(),
        caller: "addon".into(),
        slug: slug.into(),
        role: "-".into(),
        method: method.into(),
        path: path.into(),
        decision: decision.into(),
        step: "add-ons".into(),
        rule: "-".into(),
        status: 200,
        latency_us: 1,
    }
}

fn config() -> Config {
    Config::from_yaml(
        "upstream: http://127.0.0.1:1\naddons:\n\
         - { slug: over, token: t1, hassio_api: true, hassio_role: manager }\n\
         - { slug: full, token: t2, hassio_api: true, hassio_role: manager }\n\
         - { slug: selfish, token: t3, hassio_api: true, hassio_role: admin, homeassistant_api: true }\n\
         - { slug: idle, token: t4, hassio_api: true, hassio_role: backup }\n",
        "test.yaml",
    )
    .expect("config")
}

#[test]
fn the_smallest_role_that_allowed_everything_is_named() {
    let table = Table::builtin().expect("table");
    let entries = vec![
        entry("over", "GET", "/backups", "allowed"),
        entry("over", "POST", "/backups/new/full", "allowed"),
        entry("over", "POST", "/os/update", "denied"),
        entry("full", "GET", "/backups", "allowed"),
        entry("full", "POST", "/os/update", "allowed"),
        entry("selfish", "GET", "/addons/self/info", "allowed"),
        entry("selfish", "GET", "/core/api/states", "allowed"),
    ];
    let advice = advise(&config(), &table, &entries);
    let by_slug = |slug: &str| advice.iter().find(|a| a.slug == slug).expect("advice");

    let over = by_slug("over");
    assert_eq!(over.smallest_role.as_deref(), Some("backup"), "{over:?}");
    assert!(
        over.summary.contains("declares manager, backup would do"),
        "{}",
        over.summary
    );

    let full = by_slug("full");
    assert_eq!(full.smallest_role.as_deref(), Some("manager"));
    assert!(full.summary.contains("keeps manager"), "{}", full.summary);

    let selfish = by_slug("selfish");
    assert!(
        !selfish.needs_hassio_api && selfish.needs_homeassistant_api,
        "{selfish:?}"
    );
    assert!(
        selfish.summary.contains("hassio_api is not needed"),
        "{}",
        selfish.summary
    );

    assert_eq!(by_slug("idle").requests, 0);
    assert!(by_slug("idle").summary.contains("nothing to go by"));

    // The advice never names a role that would refuse a request it made.
    for item in &advice {
        let Some(role) = item.smallest_role.as_deref().and_then(Role::from_name) else {
            continue;
        };
        let addon = Arc::new(Addon {
            slug: item.slug.clone(),
            hassio_api: true,
            role,
            homeassistant_api: item.needs_homeassistant_api,
            auth_api: item.needs_auth_api,
        });
        for seen in entries
            .iter()
            .filter(|e| e.slug == item.slug && e.decision == "allowed")
        {
            let method = Method::from_bytes(seen.method.as_bytes()).expect("method");
            let decision = decide(&table, &Caller::Addon(addon.clone()), &method, &seen.path);
            assert!(
                decision.allowed(),
                "{} as {}: {} {}",
                item.slug,
                role.name(),
                seen.method,
                seen.path
            );
        }
    }
}

#[test]
fn upstream_refusals_do_not_count_and_more_than_declared_is_said_plainly() {
    let table = Table::builtin().expect("table");
    let mut refused = entry("over", "POST", "/os/update", "allowed");
    refused.status = 403;
    let entries = vec![
        entry("over", "GET", "/backups", "allowed"),
        refused,
        entry("idle", "POST", "/os/update", "allowed"),
        entry("idle", "GET", "/core/api/states", "allowed"),
    ];
    let advice = advise(&config(), &table, &entries);
    let over = advice.iter().find(|a| a.slug == "over").expect("advice");
    assert_eq!(
        (over.requests, over.smallest_role.as_deref()),
        (1, Some("backup"))
    );
    let idle = advice.iter().find(|a| a.slug == "idle").expect("advice");
    assert_eq!(idle.smallest_role.as_deref(), Some("manager"));
    assert!(
        idle.summary.contains("more than it declares"),
        "{}",
        idle.summary
    );
    assert!(
        idle.summary.contains("needed homeassistant_api"),
        "{}",
        idle.summary
    );
    assert!(!idle.summary.contains("would do"), "{}", idle.summary);
}

#[test]
fn a_request_the_table_no_longer_allows_is_reported_not_counted() {
    let table = Table::builtin().expect("table");
    let entries = vec![
        entry("over", "GET", "/backups", "allowed"),
        entry("over", "GET", "/core/api/hassio", "allowed"),
    ];
    let advice = advise(&config(), &table, &entries);
    let over = advice.iter().find(|a| a.slug == "over").expect("advice");
    assert_eq!(over.smallest_role.as_deref(), Some("backup"));
    assert_eq!(over.unexplained, ["GET /core/api/hassio"]);
    assert!(text(&advice).contains("not allowed under the current table"));
}
