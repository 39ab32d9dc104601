//! Supervisor-shaped bodies for the mock upstream: one builder per info
//! endpoint but the add-on ones (in the add-ons module), plus the backup seeds.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::addons::{find_addon, supervisor_addon, AddonSeed, ADDONS};
use super::Api;

const SUPERVISOR_VERSION: &str = "2025.11.2";
const CORE_VERSION: &str = "2025.11.3";
const OS_VERSION: &str = "16.3";
const DOCKER_VERSION: &str = "28.3.3";
pub(super) const ARCH: &str = "aarch64";
const MACHINE: &str = "raspberrypi5-64";
const TIMEZONE: &str = "Europe/Berlin";
const STORE_ICON: &str = "https://brands.home-assistant.io/_/hassio/icon.png";

/// Body of a fixed GET path (already normalised to v1 words), if there is one.
pub(super) fn fixed(path: &str, api: Api) -> Option<Value> {
    let data = match path {
        "info" => root_info(),
        "available_updates" => available_updates(),
        "supervisor/ping" | "auth" => json!({}),
        "supervisor/info" => supervisor_info(api),
        "core/info" => core_info(),
        "backups" => backups(api, false),
        "backups/info" => backups(api, true),
        "store" => store(api),
        "store/addons" => json!({ api.addons_word(): store_addons() }),
        "host/info" => host_info(),
        "os/info" => os_info(),
        "network/info" => network_info(),
        "dns/info" => dns_info(),
        "audio/info" => audio_info(),
        "cli/info" | "multicast/info" | "observer/info" => {
            let name = path.trim_end_matches("/info");
            plugin_info(name, json!({"host": "172.30.32.6"}))
        }
        _ => return others(path),
    };
    Some(data)
}

/// The rest of the fixed table, split off to keep each match short.
fn others(path: &str) -> Option<Value> {
    let data = match path {
        "jobs/info" => json!({"ignore_conditions": [], "jobs": []}),
        "resolution/info" => json!({"unsupported": [], "unhealthy": [],
            "suggestions": [], "issues": [], "checks": [
                {"enabled": true, "slug": "free_space"},
                {"enabled": true, "slug": "network_interface_ipv4"}]}),
        "security/info" => json!({"content_trust": true, "pwned": true,
            "force_security": false}),
        "mounts" => json!({"default_backup_mount": null, "mounts": []}),
        "docker/info" => json!({"version": DOCKER_VERSION, "enable_ipv6": null,
            "mtu": null, "storage": "overlay2", "logging": "journald",
            "registries": {}}),
        "docker/registries" => json!({"registries": {}}),
        "hardware/info" => hardware_info(),
        "hardware/audio" => json!({"audio": {"input": {}, "output": {}}}),
        "services" => json!({"services": [{"slug": "mqtt", "available": true,
            "providers": ["core_mosquitto"]}, {"slug": "mysql",
            "available": false, "providers": []}]}),
        "discovery" => json!({"discovery": [{"addon": "core_mosquitto",
            "service": "mqtt", "uuid": "6f1b0c2e9d3a4b5c8e7f0a1b2c3d4e5f",
            "config": {"host": "core-mosquitto", "port": 1883}}],
            "services": {"mqtt": ["core_mosquitto"]}}),
        "auth/list" => json!({"users": [{"username": "owner", "name": "Owner",
            "is_owner": true, "is_active": true, "local_only": false,
            "group_ids": ["system-admin"]}]}),
        "ingress/panels" => json!({"panels": {"core_ssh": {"enable": true,
            "icon": "mdi:console", "title": "Terminal", "admin": true}}}),
        "store/repositories" => store_repositories(),
        _ => return None,
    };
    Some(data)
}

/// Generic body for `GET /<area>/info` on an area without its own builder.
pub(super) fn generic_info(area: &str) -> Value {
    json!({"area": area, "version": SUPERVISOR_VERSION,
        "version_latest": SUPERVISOR_VERSION, "update_available": false})
}

/// Container statistics; `seed` varies the numbers between subjects.
pub(super) fn stats(seed: &str) -> Value {
    let n = seed.bytes().map(u64::from).sum::<u64>() % 97;
    let usage = 48_000_000 + n * 1_000_000;
    let limit = 3_980_000_000_u64;
    json!({"cpu_percent": 0.5 + n as f64 / 10.0, "memory_usage": usage,
        "memory_limit": limit,
        "memory_percent": (usage as f64 * 10_000.0 / limit as f64).round() / 100.0,
        "network_rx": 1_300_000 + n, "network_tx": 900_000 + n,
        "blk_read": 12_000_000 + n, "blk_write": 4_000_000 + n})
}

/// `GET /info`: the whole installation at a glance.
fn root_info() -> Value {
    json!({"supervisor": SUPERVISOR_VERSION, "homeassistant": CORE_VERSION,
        "hassos": OS_VERSION, "docker": DOCKER_VERSION, "hostname": "homeassistant",
        "operating_system": format!("Home Assistant OS {OS_VERSION}"),
        "features": ["reboot", "shutdown", "services", "network", "hostname",
            "timedate", "os_agent", "haos", "resolved", "journal", "disk", "mount"],
        "machine": MACHINE, "machine_id": "5c4d2f0b8e1a4a7f9c3b6d2e1f0a9b8c",
        "arch": ARCH, "supported_arch": [ARCH, "armv7", "armhf"],
        "supported": true, "channel": "stable", "logging": "info",
        "state": "running", "timezone": TIMEZONE})
}

fn available_updates() -> Value {
    json!({"available_updates": [{"update_type": "addon", "name": "Mosquitto broker",
        "icon": "/addons/core_mosquitto/icon", "version_latest": "6.5.2",
        "panel_path": "/hassio/addon/core_mosquitto/info"}]})
}

fn supervisor_info(api: Api) -> Value {
    let mut data = json!({"version": SUPERVISOR_VERSION,
        "version_latest": SUPERVISOR_VERSION, "update_available": false,
        "channel": "stable", "arch": ARCH, "supported": true, "healthy": true,
        "ip_address": "172.30.32.2", "timezone": TIMEZONE, "logging": "info",
        "debug": false, "debug_block": false, "diagnostics": true,
        "auto_update": true, "detect_blocking_io": false, "country": "DE",
        "feature_flags": {}});
    if api == Api::V1 {
        let addons: Vec<Value> = ADDONS.iter().map(supervisor_addon).collect();
        extend(
            &mut data,
            json!({"wait_boot": 5, "addons": addons,
            "addons_repositories": ["https://github.com/hassio-addons/repository"]}),
        );
    }
    data
}

fn core_info() -> Value {
    json!({"version": CORE_VERSION, "version_latest": CORE_VERSION,
        "update_available": false, "machine": MACHINE, "ip_address": "172.30.32.1",
        "arch": ARCH, "image": "ghcr.io/home-assistant/raspberrypi5-64-homeassistant",
        "boot": true, "port": 8123, "ssl": false, "watchdog": true,
        "audio_input": null, "audio_output": null,
        "backups_exclude_database": false, "duplicate_log_file": false})
}

/// One backup the mock lists.
struct BackupSeed {
    slug: &'static str,
    name: &'static str,
    date: &'static str,
    full: bool,
}

const BACKUPS: &[BackupSeed] = &[
    BackupSeed {
        slug: "a1b2c3d4",
        name: "Automatic backup 2025.11.3",
        date: "2025-11-20T03:00:00+00:00",
        full: true,
    },
    BackupSeed {
        slug: "e5f6a7b8",
        name: "Before Mosquitto update",
        date: "2025-11-21T18:42:10+00:00",
        full: false,
    },
];

/// Stands in for a backup the mock never listed, such as a fresh upload.
const UPLOADED: BackupSeed = BackupSeed {
    slug: "",
    name: "Uploaded backup",
    date: "2025-11-22T08:00:00+00:00",
    full: false,
};

fn backups(api: Api, with_stale: bool) -> Value {
    let list: Vec<Value> = BACKUPS
        .iter()
        .map(|seed| backup_entry(api, seed.slug, seed))
        .collect();
    let mut data = json!({"backups": list});
    if with_stale {
        extend(&mut data, json!({"days_until_stale": 30}));
    }
    data
}

fn backup_entry(api: Api, slug: &str, seed: &BackupSeed) -> Value {
    let BackupSeed {
        name, date, full, ..
    } = *seed;
    let addons: Vec<&str> = backup_addons(full).map(|a| a.slug).collect();
    let folders: Vec<&str> = if full {
        vec!["share", "ssl", "media"]
    } else {
        vec![]
    };
    json!({"slug": slug, "name": name, "date": date,
        "type": if full { "full" } else { "partial" },
        "size": if full { 0.42 } else { 0.01 },
        "size_bytes": if full { 440_401_920_u64 } else { 10_485_760 },
        "location": null, "locations": [null], "protected": false,
        "location_attributes": {".local": {"protected": false,
            "size_bytes": if full { 440_401_920_u64 } else { 10_485_760 }}},
        "compressed": true, "content": {"homeassistant": full,
            api.addons_word(): addons, "folders": folders}})
}

/// `GET /backups/<slug>/info`; a slug the mock never listed gets a partial one.
pub(super) fn backup_info(api: Api, slug: &str) -> Value {
    let seed = BACKUPS.iter().find(|b| b.slug == slug).unwrap_or(&UPLOADED);
    let full = seed.full;
    let mut data = backup_entry(api, slug, seed);
    let addons: Vec<Value> = backup_addons(full)
        .map(|a| json!({"slug": a.slug, "name": a.name, "version": a.version, "size": 0.01}))
        .collect();
    extend(
        &mut data,
        json!({"supervisor_version": SUPERVISOR_VERSION,
        "homeassistant": if full { json!(CORE_VERSION) } else { Value::Null },
        "repositories": ["https://github.com/hassio-addons/repository"],
        "homeassistant_exclude_database": false, "extra": {},
        api.addons_word(): addons}),
    );
    data
}

/// A full backup holds every add-on; the partial ones hold only the broker.
fn backup_addons(full: bool) -> impl Iterator<Item = &'static AddonSeed<'static>> {
    ADDONS
        .iter()
        .filter(move |a| full || a.slug == "core_mosquitto")
}

fn host_info() -> Value {
    json!({"agent_version": "1.7.2", "apparmor_version": "3.1.2",
        "chassis": "embedded", "virtualization": "", "cpe": "cpe:2.3:o:home-assistant:haos",
        "deployment": "production", "disk_free": 48.2, "disk_total": 58.0,
        "disk_used": 9.8, "disk_life_time": 10.0, "features": ["reboot", "shutdown",
            "services", "network", "hostname", "timedate", "os_agent", "haos"],
        "hostname": "homeassistant", "llmnr_hostname": "homeassistant",
        "kernel": "6.12.25-haos-raspi", "operating_system": format!(
            "Home Assistant OS {OS_VERSION}"), "timezone": TIMEZONE,
        "dt_utc": "2025-11-22T09:15:00.000000+00:00", "dt_synchronized": true,
        "use_ntp": true, "startup_time": 4.2, "boot_timestamp": 1763716800000000_u64,
        "broadcast_llmnr": true, "broadcast_mdns": true})
}

fn os_info() -> Value {
    json!({"version": OS_VERSION, "version_latest": OS_VERSION,
        "update_available": false, "board": "rpi5-64", "boot": "A",
        "data_disk": "/dev/mmcblk0p8", "boot_slots": {"A": {"state": "booted",
            "status": "good", "version": OS_VERSION}, "B": {"state": "inactive",
            "status": "good", "version": "16.2"}}})
}

fn network_info() -> Value {
    json!({"interfaces": [{"interface": "end0", "type": "ethernet",
        "enabled": true, "connected": true, "primary": true,
        "mac": "2C:CF:67:00:00:01", "ipv4": {"method": "auto",
            "address": ["192.168.1.20/24"], "gateway": "192.168.1.1",
            "nameservers": ["192.168.1.1"], "ready": true},
        "ipv6": {"method": "auto", "address": [], "gateway": null,
            "nameservers": [], "ready": false}, "wifi": null, "vlan": null}],
        "docker": {"interface": "hassio", "address": "172.30.32.0/23",
            "gateway": "172.30.32.1", "dns": "172.30.32.3"},
        "host_internet": true, "supervisor_internet": true})
}

fn dns_info() -> Value {
    plugin_info(
        "dns",
        json!({"host": "172.30.32.3", "servers": [],
        "locals": ["dns://192.168.1.1"], "mdns": true, "llmnr": true,
        "fallback": true}),
    )
}

fn audio_info() -> Value {
    plugin_info(
        "audio",
        json!({"host": "172.30.32.4", "audio": {
        "card": [], "input": [], "output": [{"name": "alsa_output.default",
            "index": 0, "description": "Built-in Audio", "volume": 0.8,
            "mute": false, "default": true, "card": null, "applications": []}],
        "application": []}}),
    )
}

fn plugin_info(name: &str, extra: Value) -> Value {
    let mut data = json!({"version": "2025.08.0", "version_latest": "2025.08.0",
        "update_available": false, "image": format!(
            "ghcr.io/home-assistant/{ARCH}-hassio-{name}")});
    extend(&mut data, extra);
    data
}

fn hardware_info() -> Value {
    json!({"devices": [{"name": "ttyAMA0", "sysfs": "/sys/devices/platform/serial",
        "dev_path": "/dev/ttyAMA0", "subsystem": "tty", "by_id": null,
        "parent": null, "children": [], "attributes": {}}],
        "drives": [{"vendor": "SanDisk", "model": "SD64G", "revision": "",
            "serial": "0x1234abcd", "id": "sd-SD64G", "size": 63_864_569_856_u64,
            "time_detected": "2025-11-21T08:00:00+00:00",
            "connection_bus": "sdio", "seat": "seat0", "removable": false,
            "ejectable": false, "filesystems": []}]})
}

fn store(api: Api) -> Value {
    let mut data = store_repositories();
    extend(&mut data, json!({ api.addons_word(): store_addons() }));
    data
}

fn store_repositories() -> Value {
    json!({"repositories": [
        {"slug": "core", "name": "Official add-ons", "source": "core",
         "url": "https://home-assistant.io/addons", "maintainer": "Home Assistant"},
        {"slug": "a0d7b954", "name": "Home Assistant Community Add-ons",
         "source": "https://github.com/hassio-addons/repository",
         "url": "https://addons.community", "maintainer": "Franck Nijhof"}]})
}

fn store_addons() -> Vec<Value> {
    ADDONS.iter().map(|seed| store_addon(seed.slug)).collect()
}

/// `GET /store/addons/<slug>`.
pub(super) fn store_addon(slug: &str) -> Value {
    let seed = find_addon(slug);
    let version = seed.map_or("1.0.0", |s| s.version_latest);
    json!({"slug": slug, "name": seed.map_or(slug, |s| s.name),
        "description": seed.map_or("", |s| s.description),
        "version": version, "version_latest": version,
        "repository": seed.map_or("local", |s| s.repository),
        "available": true, "installed": seed.is_some(), "update_available": false,
        "advanced": false, "stage": "stable", "build": false,
        "homeassistant": null, "icon": true, "logo": true, "url": STORE_ICON})
}

/// A few log lines attributed to `source`.
pub(super) fn log_lines(source: &str) -> String {
    let mut text = String::new();
    for (n, level, what) in [
        (1, "INFO", "starting up"),
        (2, "INFO", "loaded configuration"),
        (3, "WARNING", "update check skipped: offline mock"),
        (4, "INFO", "ready"),
    ] {
        text.push_str(&format!(
            "2025-11-22 09:15:0{n}.000 {level} ({source}) [mock] {what}\n"
        ));
    }
    text
}

/// Home Assistant core's own answer to `/api/<rest>` (not the envelope).
pub(super) fn core_api(method: &Method, rest: &str) -> (StatusCode, Value) {
    let body = match (method.as_str(), rest) {
        (_, "") => json!({"message": "API running."}),
        ("GET", "states") => Value::Array(entity_states()),
        ("GET", "config") => core_config(),
        ("GET", "events") => json!([{"event": "state_changed", "listener_count": 3}]),
        ("POST", r) if r.starts_with("services/") => json!([]),
        ("GET", r) if r.starts_with("states/") => {
            let id = &r["states/".len()..];
            return match entity_states().into_iter().find(|s| s["entity_id"] == id) {
                Some(state) => (StatusCode::OK, state),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"message": "Entity not found."}),
                ),
            };
        }
        _ => json!({"message": "ok"}),
    };
    (StatusCode::OK, body)
}

fn core_config() -> Value {
    json!({"location_name": "Home", "latitude": 52.52, "longitude": 13.40,
        "elevation": 34, "time_zone": TIMEZONE, "version": CORE_VERSION,
        "state": "RUNNING", "components": ["hassio", "http", "sun", "light"],
        "unit_system": {"length": "km", "mass": "g", "temperature": "°C"}})
}

fn entity_states() -> Vec<Value> {
    let context = json!({"id": "01JD3Q9V7W2X4Y6Z8A0B1C2D3E", "parent_id": null,
        "user_id": null});
    vec![
        json!({"entity_id": "sun.sun", "state": "above_horizon",
            "attributes": {"friendly_name": "Sun", "elevation": 18.4},
            "last_changed": "2025-11-22T07:41:00+00:00",
            "last_updated": "2025-11-22T09:14:00+00:00", "context": context}),
        json!({"entity_id": "light.kitchen", "state": "off",
            "attributes": {"friendly_name": "Kitchen", "supported_color_modes": ["onoff"]},
            "last_changed": "2025-11-21T22:03:00+00:00",
            "last_updated": "2025-11-21T22:03:00+00:00", "context": context}),
    ]
}

/// A small, valid tar archive standing in for backup `slug`.
pub(super) fn backup_tar(slug: &str) -> Vec<u8> {
    let manifest = json!({"slug": slug, "name": "mock backup", "type": "partial",
        "date": "2025-11-22T08:00:00+00:00", "compressed": false});
    let notes = "mock backup payload line\n".repeat(120);
    let mut tar = Vec::new();
    tar_entry(&mut tar, "backup.json", manifest.to_string().as_bytes());
    tar_entry(&mut tar, "notes.txt", notes.as_bytes());
    // Two zero blocks mark the end of a tar archive.
    tar.resize(tar.len() + 1024, 0);
    tar
}

fn tar_entry(tar: &mut Vec<u8>, name: &str, content: &[u8]) {
    let mut header = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"15100000000\0");
    // The checksum is computed with its own field read as eight spaces.
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\x0000");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&header);
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// Adds the fields of `extra` to `data`; both must be objects.
pub(super) fn extend(data: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(more)) = (data, extra) {
        target.extend(more);
    }
}
