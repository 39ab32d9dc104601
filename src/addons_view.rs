//! `supervisor-gateway addons`: one row per configured add-on with its
//! role, API flags, security rating, protection mode, the privileges that
//! are effective under it, and the secure-add-on practices it misses.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::manifests::Manifest;

/// One add-on as the view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The slug.
    pub slug: String,
    /// Where it was configured: `inline` or the manifest's path.
    pub source: String,
    /// `hassio_role`.
    pub role: String,
    /// `hassio_api`.
    pub hassio_api: bool,
    /// `homeassistant_api`.
    pub homeassistant_api: bool,
    /// `auth_api`.
    pub auth_api: bool,
    /// The security rating of what is effective (1 to 8).
    pub rating: u8,
    /// Protection mode, as the gateway last saw it toggled (on by default).
    pub protected: bool,
    /// The privileges the container gets.
    pub effective: Vec<String>,
    /// Declared privileges that protection mode withholds.
    pub withheld: Vec<String>,
    /// Secure-add-on practices the manifest misses.
    pub missed: Vec<String>,
}

/// The rows for `config`, with protection mode from `states` (slug →
/// protected; missing means on).
pub fn rows(config: &Config, states: &BTreeMap<String, bool>) -> Vec<Row> {
    config
        .manifests
        .iter()
        .map(|manifest| {
            row(
                manifest,
                states.get(&manifest.slug).copied().unwrap_or(true),
            )
        })
        .collect()
}

fn row(manifest: &Manifest, protected: bool) -> Row {
    let declared = declared_privileges(manifest);
    let effective = manifest.effective(protected);
    let withheld: Vec<String> = [
        (
            "full_access",
            manifest.full_access && !effective.full_access,
        ),
        ("docker_api", manifest.docker_api && !effective.docker_api),
        ("host_pid", manifest.host_pid && !effective.host_pid),
    ]
    .into_iter()
    .filter(|(_, withheld)| *withheld)
    .map(|(name, _)| name.to_owned())
    .collect();
    Row {
        slug: manifest.slug.clone(),
        source: manifest
            .path
            .as_ref()
            .map_or("inline".to_owned(), |path| path.display().to_string()),
        role: manifest.role.name().to_owned(),
        hassio_api: manifest.hassio_api,
        homeassistant_api: manifest.homeassistant_api,
        auth_api: manifest.auth_api,
        rating: manifest.rating(protected),
        protected,
        effective: declared
            .into_iter()
            .filter(|name| !withheld.contains(name))
            .collect(),
        withheld,
        missed: manifest.missed_practices(),
    }
}

/// Everything the manifest asks for beyond the default, in words.
fn declared_privileges(manifest: &Manifest) -> Vec<String> {
    let mut declared: Vec<String> = [
        ("full_access", manifest.full_access),
        ("docker_api", manifest.docker_api),
        ("host_pid", manifest.host_pid),
        ("host_network", manifest.host_network),
        ("host_uts", manifest.host_uts),
        ("kernel_modules", manifest.kernel_modules),
    ]
    .into_iter()
    .filter(|(_, asked)| *asked)
    .map(|(name, _)| name.to_owned())
    .collect();
    declared.extend(manifest.privileged.iter().cloned());
    declared
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// The rows as an aligned text table.
pub fn text(rows: &[Row]) -> String {
    let header = [
        "slug",
        "role",
        "hassio_api",
        "homeassistant_api",
        "auth_api",
        "rating",
        "protected",
        "effective privileges",
        "withheld by protection",
        "missed practices",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for row in rows {
        table.push(vec![
            row.slug.clone(),
            row.role.clone(),
            yes_no(row.hassio_api).to_owned(),
            yes_no(row.homeassistant_api).to_owned(),
            yes_no(row.auth_api).to_owned(),
            row.rating.to_string(),
            if row.protected { "on" } else { "off" }.to_owned(),
            list(&row.effective),
            list(&row.withheld),
            list(&row.missed),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            table
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_yaml(text, "test.yaml").expect("config")
    }

    #[test]
    fn inline_addons_get_a_row_with_the_defaults() {
        let config = config(
            "upstream: http://127.0.0.1:1\naddons:\n  - { slug: m, token: t1, hassio_api: true, hassio_role: manager }\n",
        );
        let rows = rows(&config, &BTreeMap::new());
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            (row.slug.as_str(), row.role.as_str(), row.rating),
            ("m", "manager", 4)
        );
        assert!(row.protected && row.hassio_api && !row.auth_api);
        assert_eq!(row.source, "inline");
        assert!(row.effective.is_empty() && row.withheld.is_empty());
        assert!(row.missed.contains(&"unsigned image".to_owned()));
    }

    #[test]
    fn protection_off_grants_what_it_withheld_and_lowers_the_rating() {
        let dir = tempfile::tempdir().expect("dir");
        let folder = dir.path().join("addons/dock");
        std::fs::create_dir_all(&folder).expect("dir");
        std::fs::write(
            folder.join("config.yaml"),
            "slug: dock\ndocker_api: true\nhost_network: true\n",
        )
        .expect("manifest");
        std::fs::write(dir.path().join("secrets.yaml"), "dock: dock-token\n").expect("secrets");
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "upstream: http://127.0.0.1:1\naddon_manifests: addons\naddon_secrets: secrets.yaml\n",
        )
        .expect("config");
        let config = Config::load(&path).expect("config");
        let on = &rows(&config, &BTreeMap::new())[0];
        assert_eq!((on.rating, on.protected), (4, true));
        assert_eq!(on.effective, ["host_network"]);
        assert_eq!(on.withheld, ["docker_api"]);
        let off = &rows(&config, &[("dock".to_owned(), false)].into_iter().collect())[0];
        assert_eq!((off.rating, off.protected), (1, false));
        assert_eq!(off.effective, ["docker_api", "host_network"]);
        assert!(off.withheld.is_empty());
        let table = text(&[on.clone(), off.clone()]);
        assert_eq!(table.lines().count(), 3);
        assert!(table.lines().nth(1).expect("row").contains("on"));
    }
}
