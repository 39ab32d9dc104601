//! The add-ons the mock upstream describes: the seed table, what one caller
//! sees of an add-on, and the security rating its privileges earn.

use serde_json::{json, Value};

use super::data::{extend, ARCH};
use super::{Api, MockAddon};

/// Capabilities that cost an add-on a point of its rating.
const DANGEROUS_CAPABILITIES: &[&str] = &[
    "BPF",
    "CHECKPOINT_RESTORE",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    "NET_RAW",
    "PERFMON",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
];

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

/// How AppArmor confines an add-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "every seed runs the default profile; the rating tests use the rest"
    )
)]
pub(super) enum AppArmor {
    /// No confinement (`apparmor: false` in the add-on's config).
    Disabled,
    /// The Supervisor's default profile.
    Default,
    /// A profile of the add-on's own.
    Custom,
}

/// What an add-on may do, as far as its security rating counts it.
#[derive(Clone, Debug)]
pub(super) struct Privileges<'a> {
    /// Its `hassio_role`.
    pub(super) role: &'a str,
    /// Its AppArmor mode.
    pub(super) apparmor: AppArmor,
    /// Whether it is reached through ingress.
    pub(super) ingress: bool,
    /// Whether it may check user logins.
    pub(super) auth_api: bool,
    /// Whether its image is signed.
    pub(super) signed: bool,
    /// Linux capabilities it asks for, e.g. `SYS_ADMIN`.
    pub(super) privileged: &'a [&'a str],
    /// Whether it may load kernel modules.
    pub(super) kernel_modules: bool,
    /// Whether it shares the host's network namespace.
    pub(super) host_network: bool,
    /// Whether it shares the host's PID namespace.
    pub(super) host_pid: bool,
    /// Whether it shares the host's UTS namespace.
    pub(super) host_uts: bool,
    /// Whether it may use the Docker socket.
    pub(super) docker_api: bool,
    /// Whether it has full hardware access.
    pub(super) full_access: bool,
}

impl Default for Privileges<'_> {
    /// A `default`-role add-on under the default profile that asks for nothing.
    fn default() -> Self {
        Self {
            role: "default",
            apparmor: AppArmor::Default,
            ingress: false,
            auth_api: false,
            signed: false,
            privileged: &[],
            kernel_modules: false,
            host_network: false,
            host_pid: false,
            host_uts: false,
            docker_api: false,
            full_access: false,
        }
    }
}

/// The security rating of SPEC's "Security rating" section: 5, moved by
/// each term, clamped to 1..=8; Docker or full hardware access make it 1.
pub(super) fn rating(p: &Privileges<'_>) -> u8 {
    if p.docker_api || p.full_access {
        return 1;
    }
    let asks = |capability: &str| p.privileged.contains(&capability);
    let mut score: i8 = 5;
    score += match p.apparmor {
        AppArmor::Disabled => -1,
        AppArmor::Default => 0,
        AppArmor::Custom => 1,
    };
    score += if p.ingress { 2 } else { i8::from(p.auth_api) };
    score += i8::from(p.signed);
    if p.kernel_modules || DANGEROUS_CAPABILITIES.iter().any(|c| asks(c)) {
        score -= 1;
    }
    score -= match p.role {
        "manager" => 1,
        "admin" => 2,
        _ => 0,
    };
    score -= i8::from(p.host_network) + 2 * i8::from(p.host_pid);
    score -= i8::from(p.host_uts && asks("SYS_ADMIN"));
    // The clamp keeps the value in 1..=8, so the cast cannot wrap.
    score.clamp(1, 8) as u8
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

#[cfg(test)]
mod tests {
    use super::{rating, AppArmor, Privileges, DANGEROUS_CAPABILITIES};

    /// The rating of the default add-on after `change`.
    fn rated<'a>(change: impl FnOnce(&mut Privileges<'a>)) -> u8 {
        let mut privileges = Privileges::default();
        change(&mut privileges);
        rating(&privileges)
    }

    #[test]
    fn an_add_on_that_asks_for_nothing_rates_five() {
        assert_eq!(rated(|_| {}), 5);
    }

    #[test]
    fn disabled_apparmor_costs_one() {
        assert_eq!(rated(|p| p.apparmor = AppArmor::Disabled), 4);
    }

    #[test]
    fn a_custom_apparmor_profile_earns_one() {
        assert_eq!(rated(|p| p.apparmor = AppArmor::Custom), 6);
    }

    #[test]
    fn ingress_earns_two_and_auth_api_adds_nothing_on_top() {
        assert_eq!(rated(|p| p.ingress = true), 7);
        assert_eq!(
            rated(|p| {
                p.ingress = true;
                p.auth_api = true;
            }),
            7
        );
    }

    #[test]
    fn auth_api_without_ingress_earns_one() {
        assert_eq!(rated(|p| p.auth_api = true), 6);
    }

    #[test]
    fn a_signed_image_earns_one() {
        assert_eq!(rated(|p| p.signed = true), 6);
    }

    #[test]
    fn each_dangerous_capability_costs_one_and_others_nothing() {
        for capability in DANGEROUS_CAPABILITIES {
            let asked = [*capability];
            assert_eq!(rated(|p| p.privileged = &asked), 4, "{capability}");
        }
        assert_eq!(rated(|p| p.privileged = &["SYS_NICE", "IPC_LOCK"]), 5);
        assert_eq!(rated(|p| p.privileged = &["NET_ADMIN", "SYS_RAWIO"]), 4);
    }

    #[test]
    fn kernel_modules_cost_one_shared_with_the_capabilities() {
        assert_eq!(rated(|p| p.kernel_modules = true), 4);
        assert_eq!(
            rated(|p| {
                p.kernel_modules = true;
                p.privileged = &["SYS_MODULE"];
            }),
            4
        );
    }

    #[test]
    fn manager_costs_one_and_admin_two() {
        assert_eq!(rated(|p| p.role = "manager"), 4);
        assert_eq!(rated(|p| p.role = "admin"), 3);
        assert_eq!(rated(|p| p.role = "backup"), 5);
        assert_eq!(rated(|p| p.role = "homeassistant"), 5);
    }

    #[test]
    fn host_network_costs_one() {
        assert_eq!(rated(|p| p.host_network = true), 4);
    }

    #[test]
    fn host_pid_costs_two() {
        assert_eq!(rated(|p| p.host_pid = true), 3);
    }

    #[test]
    fn host_uts_costs_one_only_with_sys_admin() {
        assert_eq!(rated(|p| p.host_uts = true), 5);
        assert_eq!(rated(|p| p.privileged = &["SYS_ADMIN"]), 4);
        assert_eq!(
            rated(|p| {
                p.host_uts = true;
                p.privileged = &["SYS_ADMIN"];
            }),
            3
        );
    }

    #[test]
    fn docker_api_or_full_access_rate_one_whatever_else() {
        let with = |docker_api: bool, full_access: bool| {
            rated(|p| {
                p.ingress = true;
                p.signed = true;
                p.docker_api = docker_api;
                p.full_access = full_access;
            })
        };
        assert_eq!(with(false, false), 8);
        assert_eq!(with(true, false), 1);
        assert_eq!(with(false, true), 1);
    }

    #[test]
    fn the_rating_is_clamped_to_one_through_eight() {
        let top = rated(|p| {
            p.apparmor = AppArmor::Custom;
            p.ingress = true;
            p.signed = true;
        });
        let bottom = rated(|p| {
            p.role = "admin";
            p.apparmor = AppArmor::Disabled;
            p.host_pid = true;
            p.host_network = true;
            p.host_uts = true;
            p.privileged = &["SYS_ADMIN"];
        });
        assert_eq!((top, bottom), (8, 1));
    }
}
