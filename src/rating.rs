//! The security rating of SPEC.md (1 to 8) over an add-on's privileges:
//! what the mock upstream reports in add-on info and what `addons` shows.

/// Capabilities that cost an add-on a point of its rating.
pub const DANGEROUS_CAPABILITIES: &[&str] = &[
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

/// How AppArmor confines an add-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppArmor {
    /// No confinement (`apparmor: false` in the add-on's config).
    Disabled,
    /// The Supervisor's default profile.
    Default,
    /// A profile of the add-on's own.
    Custom,
}

/// What an add-on may do, as far as its security rating counts it.
#[derive(Clone, Debug)]
pub struct Privileges<'a> {
    /// Its `hassio_role`.
    pub role: &'a str,
    /// Its AppArmor mode.
    pub apparmor: AppArmor,
    /// Whether it is reached through ingress.
    pub ingress: bool,
    /// Whether it may check user logins.
    pub auth_api: bool,
    /// Whether its image is signed.
    pub signed: bool,
    /// Linux capabilities it asks for, e.g. `SYS_ADMIN`.
    pub privileged: &'a [&'a str],
    /// Whether it may load kernel modules.
    pub kernel_modules: bool,
    /// Whether it shares the host's network namespace.
    pub host_network: bool,
    /// Whether it shares the host's PID namespace.
    pub host_pid: bool,
    /// Whether it shares the host's UTS namespace.
    pub host_uts: bool,
    /// Whether it may use the Docker socket.
    pub docker_api: bool,
    /// Whether it has full hardware access.
    pub full_access: bool,
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
pub fn rating(p: &Privileges<'_>) -> u8 {
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
