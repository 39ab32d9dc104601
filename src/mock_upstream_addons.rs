//! The add-ons the mock upstream describes: the seed table, what one caller
//! sees of an add-on, and the security rating its privileges earn.

use serde_json::{json, Value};

use super::data::{extend, ARCH};
use super::{Api, MockAddon};
use crate::rating::{rating, AppArmor, Privileges};

/// One installed add-on as the mock knows it.
#[derive(Clone, Copy)]
pub(super) struct AddonSeed<'a> {
    pub(super) slug: &'a str,
    pub(super) name: &'a str,
    pub(super) description: &'a str,
    pub(super) version: &'a str,
    pub(super) version_latest: &'a str,
    pub(super) started: bool,
    pub(super) repository: &'a str,
    pub(super) role: &'a str,
    pub(super) ingress: bool,
}

/// The add-ons installed on the mock's system.
pub(super) const ADDONS: &[AddonSeed<'static>] = &[
    AddonSeed {
        slug: "core_ssh",
        name: "Terminal & SSH",
        description: "Allow logging in remotely to Home Assistant using SSH",
        version: "9.18.0",
        version_latest: "9.18.0",
        started: true,
        repository: "core",
        role: "manager",
        ingress: true,
    },
    AddonSeed {
        slug: "core_mosquitto",
        name: "Mosquitto broker",
        description: "An Open Source MQTT broker",
        version: "6.5.1",
        version_latest: "6.5.2",
        started: true,
        repository: "core",
        role: "default",
        ingress: false,
    },
    AddonSeed {
        slug: "a0d7b954_vscode",
        name: "Studio Code Server",
        description: "Fully featured VSCode experience, to edit your HA config",
        version: "5.19.3",
        version_latest: "5.19.3",
        started: false,
        repository: "a0d7b954",
        role: "manager",
        ingress: true,
    },
    AddonSeed {
        slug: "local_probe",
        name: "Probe",
        description: "Local add-on used by the gateway tests",
        version: "0.1.0",
        version_latest: "0.1.0",
        started: true,
        repository: "local",
        role: "default",
        ingress: false,
    },
];

/// Who is describing an add-on, and what the description must show.
pub(super) struct AddonView<'a> {
    /// Slug of the add-on described.
    pub(super) slug: &'a str,
    /// The known add-on of that slug, whose role and API flags win.
    pub(super) known: Option<&'a MockAddon>,
    /// Role to report as `hassio_role` when `known` is `None`, or `None`
    /// for the seed's own.
    pub(super) role: Option<&'a str>,
    /// Remembered protection mode.
    pub(super) protected: bool,
    /// Whether `options` must be redacted to `{}`.
    pub(super) redact_options: bool,
    /// API version asked.
    pub(super) api: Api,
}

/// An add-on as `GET /supervisor/info` lists it.
pub(super) fn supervisor_addon(seed: &AddonSeed<'_>) -> Value {
    json!({"name": seed.name, "slug": seed.slug, "version": seed.version,
        "version_latest": seed.version_latest,
        "update_available": seed.version != seed.version_latest,
        "state": state_word(seed.started), "repository": seed.repository,
        "icon": true})
}

/// `GET /addons` (v2 `/apps`): the seeds, then the known add-ons the seeds
/// lack; `protected` looks up the remembered flag.
pub(super) fn addons_list(
    api: Api,
    known: &[MockAddon],
    protected: impl Fn(&str) -> bool,
) -> Value {
    let mut seeds: Vec<AddonSeed<'_>> = ADDONS.to_vec();
    for addon in known {
        if !seeds.iter().any(|seed| seed.slug == addon.slug) {
            seeds.push(seed_for(&addon.slug));
        }
    }
    let list: Vec<Value> = seeds
        .iter()
        .map(|seed| {
            let mut entry = supervisor_addon(seed);
            extend(
                &mut entry,
                json!({"description": seed.description,
                "advanced": false, "stage": "stable", "available": true,
                "detached": false, "homeassistant": null, "build": false,
                "url": null, "logo": true, "system_managed": false,
                "protected": protected(seed.slug)}),
            );
            entry
        })
        .collect();
    json!({ api.addons_word(): list })
}

/// `GET /addons/<slug>/info` with every field the Supervisor answers.
pub(super) fn addon_info(view: &AddonView<'_>) -> Value {
    let seed = seed_for(view.slug);
    let privileges = privileges(view, &seed);
    let mut data = addon_identity(view, &seed);
    extend(&mut data, addon_access(view, &privileges));
    extend(&mut data, addon_runtime(view, &seed, &privileges));
    if view.api == Api::V1 {
        extend(&mut data, json!({"advanced": false}));
    }
    data
}

/// The role comes from the known add-on, else the view, else the seed; the
/// other privileges are the seed's or the defaults.
fn privileges<'a>(view: &AddonView<'a>, seed: &AddonSeed<'a>) -> Privileges<'a> {
    let role = match view.known {
        Some(known) => known.role.as_str(),
        None => view.role.unwrap_or(seed.role),
    };
    Privileges {
        role,
        ingress: seed.ingress,
        auth_api: view.known.is_some_and(|known| known.auth_api),
        ..Privileges::default()
    }
}

fn addon_identity(view: &AddonView<'_>, seed: &AddonSeed<'_>) -> Value {
    let name = seed.name;
    json!({"name": name, "slug": view.slug,
        "hostname": view.slug.replace('_', "-"),
        "description": seed.description,
        "long_description": format!("# {name}\n\nDocumentation for {name}."),
        "version": seed.version, "version_latest": seed.version_latest,
        "update_available": seed.version != seed.version_latest,
        "repository": seed.repository, "protected": view.protected,
        "stage": "stable",
        "url": format!("https://example.org/addons/{}", view.slug),
        "icon": true, "logo": true, "changelog": true, "documentation": true,
        "available": true, "detached": false, "build": false,
        "homeassistant": null, "translations": {}})
}

fn addon_access(view: &AddonView<'_>, p: &Privileges<'_>) -> Value {
    let (hassio_api, homeassistant_api) = view.known.map_or((true, false), |known| {
        (known.hassio_api, known.homeassistant_api)
    });
    json!({"rating": rating(p), "hassio_role": p.role, "arch": [ARCH, "amd64"],
        "machine": [], "hassio_api": hassio_api,
        "homeassistant_api": homeassistant_api, "auth_api": p.auth_api,
        "host_network": p.host_network, "host_pid": p.host_pid,
        "host_ipc": false, "host_uts": p.host_uts, "host_dbus": false,
        "privileged": p.privileged, "full_access": p.full_access,
        "apparmor": apparmor_word(p.apparmor), "docker_api": p.docker_api,
        "kernel_modules": p.kernel_modules, "devicetree": false, "udev": false,
        "gpio": false, "usb": false, "uart": false, "video": false,
        "audio": false, "audio_input": null, "audio_output": null,
        "stdin": false, "signed": p.signed, "devices": [], "services": [],
        "discovery": [], "startup": "application", "system_managed": false,
        "system_managed_config_entry": null})
}

fn addon_runtime(view: &AddonView<'_>, seed: &AddonSeed<'_>, p: &Privileges<'_>) -> Value {
    let ingress = p.ingress;
    let options = if view.redact_options {
        json!({})
    } else {
        json!({"log_level": "info", "password": "mock-secret"})
    };
    json!({"state": state_word(seed.started), "boot": "auto",
        "boot_config": "auto", "options": options, "schema": [
            {"name": "log_level", "type": "select", "required": true,
             "options": ["debug", "info", "warning", "error"]},
            {"name": "password", "type": "password", "optional": true}],
        "ingress": ingress,
        "ingress_entry": ingress.then(|| format!("/api/hassio_ingress/{}", view.slug)),
        "ingress_url": ingress.then(|| format!("/api/hassio_ingress/{}/", view.slug)),
        "ingress_port": if ingress { json!(8099) } else { Value::Null },
        "ingress_panel": ingress, "webui": null, "ip_address": "172.30.33.4",
        "watchdog": true, "auto_update": false, "dns": [
            format!("{}.local.hass.io", view.slug.replace('_', "-"))],
        "network": {"22/tcp": 22}, "network_description": {"22/tcp": "SSH port"}})
}

/// The Supervisor's word for an AppArmor mode in add-on info.
fn apparmor_word(mode: AppArmor) -> &'static str {
    match mode {
        AppArmor::Disabled => "disable",
        AppArmor::Default => "default",
        AppArmor::Custom => "profile",
    }
}

pub(super) fn find_addon(slug: &str) -> Option<&'static AddonSeed<'static>> {
    ADDONS.iter().find(|seed| seed.slug == slug)
}

/// The seed of `slug`, or a started one-point-oh for a slug the seeds lack.
fn seed_for(slug: &str) -> AddonSeed<'_> {
    find_addon(slug).copied().unwrap_or_else(|| AddonSeed {
        slug,
        name: slug,
        description: "Add-on known only to the mock",
        version: "1.0.0",
        version_latest: "1.0.0",
        started: true,
        repository: slug.split('_').next().unwrap_or("local"),
        role: "default",
        ingress: false,
    })
}

fn state_word(started: bool) -> &'static str {
    if started {
        "started"
    } else {
        "stopped"
    }
}
