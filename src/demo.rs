//! The built-in demo: the mock upstream on an ephemeral loopback port and a
//! gateway in front of it, with one add-on per role and fixed demo tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Addon;
use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::mock_upstream::{self, MockAddon, MockHandle, MockState};
use crate::table::Table;

/// The demo's callers: (token, who holds it).
pub const DEMO_TOKENS: [(&str, &str); 8] = [
    ("demo-default", "add-on demo_default, role default"),
    (
        "demo-homeassistant",
        "add-on demo_homeassistant, role homeassistant, homeassistant_api",
    ),
    ("demo-backup", "add-on demo_backup, role backup"),
    ("demo-manager", "add-on demo_manager, role manager"),
    (
        "demo-admin",
        "add-on demo_admin, role admin, homeassistant_api, auth_api",
    ),
    ("demo-core", "the Home Assistant core"),
    ("demo-cli", "the CLI plugin"),
    ("demo-observer", "the observer plugin"),
];

/// The demo configuration for a gateway on `listen` in front of `upstream`.
pub fn demo_config(listen: SocketAddr, upstream: SocketAddr) -> Result<Config, ConfigError> {
    let text = format!(
        r#"
listen: "{listen}"
upstream: "http://{upstream}"
# The mock upstream learns its caller from these (the real Supervisor
# checks the add-on's own token).
identity_headers: true
tokens:
  homeassistant: demo-core
  cli: demo-cli
  observer: demo-observer
addons:
  - {{ slug: demo_default, token: demo-default, hassio_api: true, hassio_role: default }}
  - {{ slug: demo_homeassistant, token: demo-homeassistant, hassio_api: true, hassio_role: homeassistant, homeassistant_api: true }}
  - {{ slug: demo_backup, token: demo-backup, hassio_api: true, hassio_role: backup }}
  - {{ slug: demo_manager, token: demo-manager, hassio_api: true, hassio_role: manager }}
  - {{ slug: demo_admin, token: demo-admin, hassio_api: true, hassio_role: admin, homeassistant_api: true, auth_api: true }}
"#
    );
    Config::from_yaml(&text, "built-in demo config")
}

/// A running demo: the gateway's listener and the mock behind it.
pub struct Demo {
    /// The gateway, ready to serve.
    pub gateway: Arc<Gateway>,
    /// The gateway's bound listener.
    pub listener: TcpListener,
    /// The mock upstream, already serving.
    pub mock: MockHandle,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The built-in configuration or table failed to load (a bug).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Starts the mock upstream and binds the gateway's listener.
pub async fn start(listen: SocketAddr) -> Result<Demo, DemoError> {
    let mock_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| DemoError::Bind { addr, source })
    };
    let mock_listener = bind(mock_addr).await?;
    let mock_bound = mock_listener.local_addr().unwrap_or(mock_addr);
    let listener = bind(listen).await?;
    let bound = listener.local_addr().unwrap_or(listen);
    let config = demo_config(bound, mock_bound)?;
    let known: Vec<MockAddon> = config
        .addons
        .iter()
        .map(|addon| mock_addon(addon))
        .collect();
    let mock =
        mock_upstream::spawn(mock_listener, MockState::with_addons(known)).map_err(|source| {
            DemoError::Bind {
                addr: mock_bound,
                source,
            }
        })?;
    let gateway = Arc::new(Gateway::new(config, Table::builtin()?));
    Ok(Demo {
        gateway,
        listener,
        mock,
    })
}

/// The mock's record of a configured add-on, so that its info answers with
/// the add-on's own role and flags.
fn mock_addon(addon: &Addon) -> MockAddon {
    MockAddon {
        slug: addon.slug.clone(),
        role: addon.role.name().to_owned(),
        hassio_api: addon.hassio_api,
        homeassistant_api: addon.homeassistant_api,
        auth_api: addon.auth_api,
    }
}

/// The banner the demo prints: where it listens, the tokens, and curl lines
/// to try, each with the answer it gets.
pub fn banner(gateway: SocketAddr, upstream: SocketAddr) -> String {
    let base = format!("http://{gateway}");
    let mut out = format!(
        "supervisor-gateway demo\n  gateway:  {base}\n  upstream: http://{upstream} (built-in mock Supervisor)\n\ntokens:\n"
    );
    for (token, who) in DEMO_TOKENS {
        out.push_str(&format!("  {token:<20} {who}\n"));
    }
    let toggle = r#"-H 'Content-Type: application/json' -d '{"protected": false}'"#;
    let lines = [
        "# allowed (200): an add-on reads its own info".to_owned(),
        format!("curl -s -H 'Authorization: Bearer demo-default' {base}/addons/self/info"),
        "# denied (403): the default role may not list backups".to_owned(),
        format!("curl -s -H 'X-Supervisor-Token: demo-default' {base}/backups"),
        "# allowed (200): the backup role may".to_owned(),
        format!("curl -s -H 'X-Supervisor-Token: demo-backup' {base}/backups"),
        "# denied (401): no token".to_owned(),
        format!("curl -s {base}/supervisor/info"),
        "# denied (403): a manager may not turn protection mode off".to_owned(),
        format!("curl -s -X POST -H 'X-Supervisor-Token: demo-manager' {toggle} {base}/addons/demo_backup/security"),
        "# allowed (200): an admin may".to_owned(),
        format!("curl -s -X POST -H 'X-Supervisor-Token: demo-admin' {toggle} {base}/addons/demo_backup/security"),
        "# allowed (200): the upstream now reports \"protected\": false".to_owned(),
        format!("curl -s -H 'X-Supervisor-Token: demo-admin' {base}/addons/demo_backup/info"),
    ];
    out.push_str("\ntry:\n");
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("\nEvery decision is logged below; Ctrl-C stops the demo.\n");
    out
}
