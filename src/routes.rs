//! `routes`: the caller × route matrix over the upstream's known routes, so a
//! table change shows as a diff of this output.

use std::fmt::Write;
use std::sync::Arc;

use http::Method;

use crate::caller::Caller;
use crate::config::{Addon, Role};
use crate::decision::decide;
use crate::table::Table;

/// The Supervisor's routes (v1), with example slugs; v2 forms are derived.
pub const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/info"),
    ("GET", "/available_updates"),
    ("POST", "/refresh_updates"),
    ("POST", "/reload_updates"),
    ("GET", "/supervisor/ping"),
    ("GET", "/supervisor/info"),
    ("GET", "/supervisor/stats"),
    ("GET", "/supervisor/logs"),
    ("POST", "/supervisor/update"),
    ("POST", "/supervisor/reload"),
    ("POST", "/supervisor/restart"),
    ("POST", "/supervisor/options"),
    ("POST", "/supervisor/repair"),
    ("GET", "/addons"),
    ("POST", "/addons/reload"),
    ("GET", "/addons/self/info"),
    ("POST", "/addons/self/options"),
    ("GET", "/addons/self/options/config"),
    ("POST", "/addons/self/update"),
    ("POST", "/addons/self/security"),
    ("GET", "/addons/core_ssh/info"),
    ("GET", "/addons/core_ssh/stats"),
    ("GET", "/addons/core_ssh/logs"),
    ("GET", "/addons/core_ssh/icon"),
    ("GET", "/addons/core_ssh/logo"),
    ("GET", "/addons/core_ssh/changelog"),
    ("POST", "/addons/core_ssh/start"),
    ("POST", "/addons/core_ssh/stop"),
    ("POST", "/addons/core_ssh/restart"),
    ("POST", "/addons/core_ssh/update"),
    ("POST", "/addons/core_ssh/uninstall"),
    ("POST", "/addons/core_ssh/options"),
    ("POST", "/addons/core_ssh/stdin"),
    ("POST", "/addons/core_ssh/sys_options"),
    ("POST", "/addons/core_ssh/security"),
    ("GET", "/store"),
    ("GET", "/store/addons"),
    ("GET", "/store/addons/core_ssh/icon"),
    ("POST", "/store/addons/core_ssh/install"),
    ("POST", "/store/reload"),
    ("GET", "/store/repositories"),
    ("GET", "/core/info"),
    ("GET", "/core/stats"),
    ("GET", "/core/logs"),
    ("POST", "/core/update"),
    ("POST", "/core/restart"),
    ("POST", "/core/options"),
    ("GET", "/core/api/"),
    ("GET", "/core/api/states"),
    ("POST", "/core/api/services/light/turn_on"),
    ("GET", "/core/api/stream"),
    ("GET", "/core/websocket"),
    ("GET", "/core/api/hassio/supervisor/info"),
    ("POST", "/core/api/hassio_auth"),
    ("GET", "/homeassistant/info"),
    ("POST", "/homeassistant/restart"),
    ("GET", "/homeassistant/api/states"),
    ("GET", "/backups"),
    ("GET", "/backups/info"),
    ("GET", "/backups/abc123/info"),
    ("GET", "/backups/abc123/download"),
    ("POST", "/backups/new/full"),
    ("POST", "/backups/new/partial"),
    ("POST", "/backups/new/upload"),
    ("POST", "/backups/abc123/restore/full"),
    ("DELETE", "/backups/abc123"),
    ("GET", "/snapshots"),
    ("GET", "/host/info"),
    ("GET", "/host/logs"),
    ("POST", "/host/reboot"),
    ("POST", "/host/shutdown"),
    ("GET", "/os/info"),
    ("POST", "/os/update"),
    ("GET", "/os/datadisk/list"),
    ("POST", "/os/datadisk/move"),
    ("POST", "/os/datadisk/wipe"),
    ("GET", "/network/info"),
    ("POST", "/network/reload"),
    ("GET", "/dns/info"),
    ("POST", "/dns/restart"),
    ("GET", "/audio/info"),
    ("POST", "/audio/volume/output"),
    ("GET", "/cli/info"),
    ("POST", "/cli/update"),
    ("GET", "/multicast/info"),
    ("GET", "/observer/info"),
    ("GET", "/auth/list"),
    ("POST", "/auth"),
    ("POST", "/auth/reset"),
    ("DELETE", "/auth/cache"),
    ("GET", "/services"),
    ("POST", "/services/mqtt"),
    ("GET", "/discovery"),
    ("POST", "/discovery"),
    ("GET", "/jobs/info"),
    ("GET", "/resolution/info"),
    ("GET", "/security/info"),
    ("GET", "/mounts"),
    ("GET", "/docker/info"),
    ("GET", "/hardware/info"),
    ("GET", "/ingress/panels"),
    ("GET", "/ingress/abc123/index.html"),
    ("GET", "/app/entrypoint.js"),
];

/// The callers of the matrix: the plugins, and an add-on of each role with
/// every manifest flag on (the most that role can reach).
pub fn columns() -> Vec<(&'static str, Caller)> {
    let addon = |role: Role| {
        Caller::Addon(Arc::new(Addon {
            slug: format!("any_{}", role.name()),
            hassio_api: true,
            role,
            homeassistant_api: true,
            auth_api: true,
        }))
    };
    let mut columns = vec![
        ("anonymous", Caller::Anonymous),
        ("observer", Caller::Observer),
        ("cli", Caller::Cli),
        ("core", Caller::HomeAssistant),
    ];
    columns.extend(Role::ALL.into_iter().map(|role| (role.name(), addon(role))));
    columns
}

/// Every known route, v1 then v2 (`/v2` in front, `apps` for `addons`).
pub fn known_routes() -> Vec<(Method, String)> {
    let v1 = KNOWN_ROUTES.iter().map(|(m, p)| (*m, (*p).to_owned()));
    let v2 = KNOWN_ROUTES
        .iter()
        .filter(|(_, path)| !path.starts_with("/app/") && !path.starts_with("/snapshots"))
        .map(|(m, p)| (*m, format!("/v2{}", p.replacen("/addons", "/apps", 1))));
    v1.chain(v2)
        .filter_map(|(method, path)| Some((Method::from_bytes(method.as_bytes()).ok()?, path)))
        .collect()
}

/// One row: a route and each column's status (200 is allowed).
pub struct Row {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// One status per column, in column order.
    pub statuses: Vec<u16>,
}

/// The matrix under `table`.
pub fn matrix(table: &Table) -> Vec<Row> {
    let columns = columns();
    known_routes()
        .into_iter()
        .map(|(method, path)| {
            let statuses = columns
                .iter()
                .map(|(_, caller)| {
                    decide(table, caller, &method, &path)
                        .outcome
                        .status()
                        .as_u16()
                })
                .collect();
            Row {
                method,
                path,
                statuses,
            }
        })
        .collect()
}

fn cell(status: u16) -> String {
    if status == 200 {
        "yes".to_owned()
    } else {
        status.to_string()
    }
}

/// The matrix as aligned text.
pub fn text(rows: &[Row]) -> String {
    let names: Vec<&str> = columns().iter().map(|(name, _)| *name).collect();
    let width = rows
        .iter()
        .map(|row| row.method.as_str().len() + row.path.len() + 1)
        .max()
        .unwrap_or(10);
    let mut out = format!("{:width$}", "route");
    for name in &names {
        let _ = write!(out, "  {name}");
    }
    out.push('\n');
    for row in rows {
        let _ = write!(out, "{:width$}", format!("{} {}", row.method, row.path));
        for (status, name) in row.statuses.iter().zip(&names) {
            let _ = write!(out, "  {:>w$}", cell(*status), w = name.len());
        }
        out.push('\n');
    }
    out
}

/// The matrix as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let names: Vec<&str> = columns().iter().map(|(name, _)| *name).collect();
    let mut out = format!("| route | {} |\n", names.join(" | "));
    out.push_str(&format!("| --- |{}\n", " --- |".repeat(names.len())));
    for row in rows {
        let cells: Vec<String> = row.statuses.iter().map(|s| cell(*s)).collect();
        out.push_str(&format!(
            "| `{} {}` | {} |\n",
            row.method,
            row.path,
            cells.join(" | ")
        ));
    }
    out
}

/// The matrix as JSON: one object per route with a status per caller.
pub fn json(rows: &[Row]) -> String {
    let names: Vec<&str> = columns().iter().map(|(name, _)| *name).collect();
    let routes: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let statuses: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .zip(&row.statuses)
                .map(|(name, status)| ((*name).to_owned(), (*status).into()))
                .collect();
            serde_json::json!({ "method": row.method.as_str(), "path": row.path, "status": statuses })
        })
        .collect();
    serde_json::to_string_pretty(&routes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(rows: &[Row], method: &str, path: &str, column: &str) -> u16 {
        let index = columns()
            .iter()
            .position(|(name, _)| *name == column)
            .expect("column");
        let row = rows
            .iter()
            .find(|row| row.method == method && row.path == path)
            .expect("route in the matrix");
        row.statuses[index]
    }

    #[test]
    fn the_matrix_shows_who_reaches_the_toggle() {
        let rows = matrix(&Table::builtin().expect("default table"));
        for column in ["anonymous", "observer", "default", "backup", "manager"] {
            assert_ne!(
                status(&rows, "POST", "/addons/core_ssh/security", column),
                200,
                "{column}"
            );
            assert_ne!(
                status(&rows, "POST", "/v2/apps/core_ssh/security", column),
                200,
                "{column}"
            );
        }
        assert_eq!(
            status(&rows, "POST", "/addons/core_ssh/security", "admin"),
            200
        );
        assert_eq!(status(&rows, "GET", "/backups", "backup"), 200);
        assert_eq!(status(&rows, "GET", "/backups", "default"), 403);
        assert_eq!(status(&rows, "GET", "/supervisor/info", "anonymous"), 401);
    }

    #[test]
    fn v2_forms_say_apps_and_drop_v1_only_routes() {
        let routes = known_routes();
        assert!(routes
            .iter()
            .any(|(_, path)| path == "/v2/apps/core_ssh/security"));
        assert!(!routes
            .iter()
            .any(|(_, path)| path.starts_with("/v2/snapshots")));
    }

    #[test]
    fn every_format_lists_every_route() {
        let rows = matrix(&Table::builtin().expect("default table"));
        let count = rows.len();
        assert_eq!(text(&rows).lines().count(), count + 1);
        assert_eq!(markdown(&rows).lines().count(), count + 2);
        let parsed: serde_json::Value = serde_json::from_str(&json(&rows)).expect("json");
        assert_eq!(parsed.as_array().map(Vec::len), Some(count));
    }
}
