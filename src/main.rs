//! The `supervisor-gateway` command: reads flags and configuration, binds the
//! listener and hands it to the library with a shutdown signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use supervisor_gateway::check::{self, Who};
use supervisor_gateway::config::{Config, ConfigError};
use supervisor_gateway::gateway::Gateway;
use supervisor_gateway::table::Table;
use supervisor_gateway::{cases, demo, mock_upstream, reload, routes, server, signals};

#[derive(Parser)]
#[command(
    name = "supervisor-gateway",
    version,
    about = "A permission gateway for Supervisor-style APIs"
)]
struct Cli {
    /// Log lines as text for people, or as JSON, one object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Serve {
        /// The configuration file (YAML).
        #[arg(long, env = "SUPERVISOR_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Run the built-in demo: a mock Supervisor with a gateway in front.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run the mock Supervisor upstream alone.
    MockUpstream {
        /// Where the mock listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Explain the decision on one request; exit 0 if allowed, 1 if denied.
    Check(CheckArgs),
    /// Check a permission table; exit 2 with every problem found.
    Validate(ValidateArgs),
    /// Run policy test cases against the table; prints `N passed, N failed`.
    Test {
        /// Case files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A configuration whose table the cases run against (unless a case
        /// file names its own).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A table file the cases run against.
        #[arg(long, conflicts_with = "config")]
        table: Option<PathBuf>,
        /// Fail unless every rule of the table is exercised by some case.
        #[arg(long)]
        require_coverage: bool,
    },
    /// One row per configured add-on: role, API flags, security rating,
    /// protection mode, effective privileges and missed practices.
    Addons {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// From an audit log, the smallest role and API flags each add-on needs.
    Advise {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The audit log (`audit_log` in the configuration).
        #[arg(long)]
        audit: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Exit 0 if the admin listener's /healthz answers 200 (for container
    /// health checks, which need no curl in the image).
    Healthcheck {
        /// The admin listener's address.
        #[arg(long, default_value = "127.0.0.1:8099")]
        admin: SocketAddr,
    },
    /// Issue, inspect and revoke signed add-on tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print who may reach each of the upstream's known routes.
    Routes {
        #[command(flatten)]
        source: ValidateArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print a new signed token for a configured add-on.
    Issue {
        /// The configuration file with the signing keys.
        #[arg(long)]
        config: PathBuf,
        /// The add-on's slug.
        #[arg(long)]
        addon: String,
        /// How long the token is valid: a number and s, m, h or d.
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// The key to sign with (default: the first that may sign).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Write a new Ed25519 key pair: PREFIX.pem and PREFIX.pub.pem.
    Keygen {
        /// Path and name of the files, without extension.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a token's header and claims without verifying them.
    Inspect {
        /// The token; `-` reads it from standard input.
        token: String,
    },
    /// Revoke one token or every token of an add-on issued until now.
    Revoke {
        /// The configuration file naming the revocation file.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        what: RevokeWhat,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct RevokeWhat {
    /// The token id (`jti`), as `token inspect` shows it.
    #[arg(long)]
    jti: Option<String>,
    /// The add-on whose tokens issued until now are all revoked.
    #[arg(long)]
    addon: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ValidateArgs {
    /// A configuration file: its table (or the built-in one) is checked.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A table file to check on its own.
    #[arg(long)]
    table: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// The configuration file (YAML).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    who: CheckWho,
    /// The method, e.g. GET.
    method: String,
    /// The request target, e.g. /addons/self/info.
    target: String,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct CheckWho {
    /// Decide as the holder of this token; `-` reads it from standard input
    /// (so that it does not show in the process list).
    #[arg(long)]
    token: Option<String>,
    /// Decide as this configured add-on.
    #[arg(long)]
    addon: Option<String>,
    /// Decide as homeassistant, cli, observer or anonymous.
    #[arg(long)]
    caller: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one crypto backend for signed tokens, chosen here rather than left
    // to feature unification.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("supervisor-gateway: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli.command))
}

/// Libraries that log what passes through at trace level, WebSocket
/// messages among it (an add-on's in-band token): their trace events are
/// dropped whatever `RUST_LOG` asks, so that no token is logged at any
/// level. (Their other levels follow `RUST_LOG` like any target's.)
const NEVER_AT_TRACE: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// Whether an event or span may be logged at all (see [`NEVER_AT_TRACE`]).
fn loggable(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() != tracing::Level::TRACE
        || !NEVER_AT_TRACE.iter().any(|library| {
            metadata.target() == *library
                || metadata
                    .target()
                    .strip_prefix(library)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let never_at_trace = tracing_subscriber::filter::filter_fn(loggable);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(never_at_trace)
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .finish()
            .with(never_at_trace)
            .init(),
    }
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve { config } => serve(config).await,
        Command::Demo { listen } => run_demo(listen).await,
        Command::MockUpstream { listen } => run_mock(listen).await,
        Command::Check(args) => run_check(args),
        Command::Validate(args) => run_validate(args),
        Command::Routes { source, format } => run_routes(source, format),
        Command::Token { action } => run_token(action),
        Command::Healthcheck { admin } => run_healthcheck(admin).await,
        Command::Addons { config, format } => run_addons(&config, format),
        Command::Advise {
            config,
            audit,
            format,
        } => run_advise(&config, &audit, format),
        Command::Test {
            files,
            config,
            table,
            require_coverage,
        } => run_cases(&files, ValidateArgs { config, table }, require_coverage),
    }
}

fn run_token(action: TokenAction) -> ExitCode {
    use supervisor_gateway::token_commands::{self, Revoke};
    let result = match action {
        TokenAction::Issue {
            config,
            addon,
            ttl,
            kid,
        } => token_commands::issue(&config, &addon, &ttl, kid.as_deref()),
        TokenAction::Keygen { out } => token_commands::keygen(&out),
        TokenAction::Inspect { token } => match read_token_argument(&token) {
            Ok(token) => token_commands::inspect(&token),
            Err(error) => Err(error),
        },
        TokenAction::Revoke { config, what } => {
            let what = match (&what.jti, &what.addon) {
                (Some(jti), _) => Revoke::Jti(jti),
                (None, Some(addon)) => Revoke::Addon(addon),
                (None, None) => return fail("give --jti or --addon"),
            };
            token_commands::revoke(&config, what)
        }
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

/// A token given on the command line, or read from standard input for `-`.
fn read_token_argument(token: &str) -> Result<String, String> {
    if token != "-" {
        return Ok(token.to_owned());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|error| format!("cannot read the token from standard input: {error}"))?;
    Ok(text.trim().to_owned())
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("supervisor-gateway: {message}");
    ExitCode::from(2)
}

fn load(path: &std::path::Path) -> Result<(Config, Table), ExitCode> {
    let config = Config::load(path).map_err(|e| fail(format!("config error: {e}")))?;
    let table = supervisor_gateway::gateway::load_table(&config)
        .map_err(|problems| policy_errors(problems, &config.source))?;
    Ok((config, table))
}

fn table_errors(problems: Vec<ConfigError>) -> ExitCode {
    policy_errors(problems, "")
}

/// Problems with the policy a configuration puts in force: its tables', or
/// its own (a `state_file` that cannot be read), told apart by file.
fn policy_errors(problems: Vec<ConfigError>, config: &str) -> ExitCode {
    for problem in &problems {
        let what = if problem.file == config {
            "config"
        } else {
            "table"
        };
        eprintln!("supervisor-gateway: {what} error: {problem}");
    }
    ExitCode::from(2)
}

/// The table a `--config` or `--table` argument names; with `--config`,
/// also the table as `serve` loads it (validated; a table file that cannot
/// be read is the config's error, said at its key's line).
fn table_source(args: ValidateArgs) -> Result<(Option<PathBuf>, Option<Table>), ExitCode> {
    match (&args.config, args.table) {
        (Some(config), _) => match Config::load(config) {
            Ok(config) => match supervisor_gateway::gateway::load_table(&config) {
                Ok(table) => Ok((config.table, Some(table))),
                Err(problems) => Err(policy_errors(problems, &config.source)),
            },
            Err(error) => Err(fail(format!("config error: {error}"))),
        },
        (None, table) => Ok((table, None)),
    }
}

fn run_cases(files: &[PathBuf], source: ValidateArgs, require_coverage: bool) -> ExitCode {
    let table = if source.config.is_none() && source.table.is_none() {
        None
    } else {
        match table_source(source) {
            Ok((path, _)) => path,
            Err(code) => return code,
        }
    };
    let files: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let report = match cases::run(&files, table.as_deref()) {
        Ok(report) => report,
        Err(error) => return fail(format!("case error: {error}")),
    };
    for failure in &report.failures {
        println!("FAIL {failure}");
    }
    let exercised = report.rules - report.uncovered.len();
    println!("coverage: {exercised} of {} rules exercised", report.rules);
    if require_coverage {
        for rule in &report.uncovered {
            println!("not exercised: {rule}");
        }
    }
    let failed =
        report.failures.len() + usize::from(require_coverage && !report.uncovered.is_empty());
    println!("{} passed, {} failed", report.passed, report.failures.len());
    ExitCode::from(if failed == 0 { 0 } else { 1 })
}

fn run_routes(source: ValidateArgs, format: Format) -> ExitCode {
    let table = match table_source(source) {
        Ok((_, Some(loaded))) => loaded,
        Ok((path, None)) => match Table::load_validated(path.as_deref()) {
            Ok(table) => table,
            Err(problems) => return table_errors(problems),
        },
        Err(code) => return code,
    };
    let rows = routes::matrix(&table);
    let output = match format {
        Format::Text => routes::text(&rows),
        Format::Markdown => routes::markdown(&rows),
        Format::Json => routes::json(&rows),
    };
    print!("{output}");
    ExitCode::SUCCESS
}

fn run_validate(args: ValidateArgs) -> ExitCode {
    // With --config, both tables serve would load, loaded as serve loads
    // them: the table and the shadow table.
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    let source = match (&args.config, &args.table) {
        (Some(config), _) => match Config::load(config) {
            Ok(config) => {
                match supervisor_gateway::gateway::load_table(&config) {
                    Ok(table) => tables.push(table),
                    Err(found) => problems.extend(found),
                }
                match supervisor_gateway::gateway::load_shadow(&config) {
                    Ok(shadow) => tables.extend(shadow),
                    Err(found) => problems.extend(found),
                }
                config.source
            }
            Err(error) => return fail(format!("config error: {error}")),
        },
        (None, table) => {
            match Table::load_validated(table.as_deref()) {
                Ok(table) => tables.push(table),
                Err(found) => problems.extend(found),
            }
            String::new()
        }
    };
    for table in &tables {
        println!(
            "valid: {} (digest {}): {} rules; the protection-mode toggle is closed to every role but admin",
            table.file,
            table.digest,
            table.rule_count()
        );
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        policy_errors(problems, &source)
    }
}

async fn serve(path: PathBuf) -> ExitCode {
    // The signals are taken over first thing: until then each of them ends
    // the process by its default action, and loading the config and
    // compiling the tables takes a while.
    let shutdown = signals::shutdown();
    let hangup = signals::Signal::hangup();
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => return fail(format!("config error: {error}")),
    };
    let (listen, upstream, watch, workers, admin_listen, reuse_port) = (
        config.listen,
        config.upstream.clone(),
        config.watch_interval,
        config.workers,
        config.admin_listen,
        config.reuse_port,
    );
    supervisor_gateway::gateway::warn_config_problems(&config);
    // What a failure to open the audit log would be said as, with the
    // configuration's file and line (the configuration moves on below).
    let audit_log = config.audit_log.clone().map(|path| {
        let at = config.file_error("audit_log", "");
        (path, at)
    });
    let source = config.source.clone();
    let gateway = match Gateway::from_config(config) {
        Ok(gateway) => gateway,
        Err(problems) => return policy_errors(problems, &source),
    };
    // With `reuse_port`, every worker's listener is bound now, so that a
    // failure refuses the start before anything else is opened.
    let listening = match reuse_port {
        true => match server::bind_each(listen, workers) {
            Ok(listeners) => Listening::EachWorker(listeners),
            Err(error) => {
                return fail(format!(
                    "cannot listen on {listen} (reuse_port: a listener for each of the {workers} workers): {error}"
                ))
            }
        },
        false => match TcpListener::bind(listen).await {
            Ok(listener) => Listening::Shared(listener),
            Err(error) => return fail(format!("cannot listen on {listen}: {error}")),
        },
    };
    let admin_listener = match admin_listen {
        Some(address) => match TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                return fail(format!(
                    "cannot listen on {address} (admin_listen): {error}"
                ))
            }
        },
        None => None,
    };
    // The worker threads, started before the audit log is opened and the
    // gateway says it listens: threads the system refuses are a refused
    // start too.
    let worker_count = workers;
    let workers = match server::Workers::start(worker_count) {
        Ok(workers) => workers,
        Err(error) => return fail(format!("cannot start the worker threads: {error}")),
    };
    // Opened once everything else checked out and both addresses are
    // bound, so a refused start leaves no file behind.
    let gateway = match audit_log {
        Some((path, at)) => match supervisor_gateway::audit::Audit::open(&path) {
            Ok(audit) => Arc::new(gateway.with_audit(audit)),
            Err(error) => {
                let reason = format!("cannot open {}: {error}", path.display());
                return fail(format!("config error: {}", ConfigError { reason, ..at }));
            }
        },
        None => Arc::new(gateway),
    };
    let watcher = reload::Watcher::new(gateway.clone(), hangup);
    let admin = match admin_listener {
        Some(listener) => match start_admin(listener, &gateway, &upstream) {
            Ok(admin) => Some(admin),
            Err(code) => return code,
        },
        None => None,
    };
    let bound = listening.local_addr().unwrap_or(listen);
    tracing::info!(listen = %bound, upstream = %upstream, workers = worker_count, reuse_port, "gateway listening");
    let policy = gateway.policy();
    tracing::info!(table = %policy.table.file, digest = %policy.table.digest, "permission table loaded");
    if let Some(signed) = &policy.callers.signed {
        let keys = signed.key_ids().join(",");
        tracing::info!(
            keys,
            revoked_tokens = signed.revoked(),
            "signed tokens accepted"
        );
    }
    if let Some(shadow) = &policy.shadow {
        tracing::info!(table = %shadow.file, digest = %shadow.digest, "shadow table loaded (logged, never enforced)");
    }
    let watcher = tokio::spawn(watcher.run(watch));
    let last = gateway.clone();
    // Accepting runs as a task of the runtime, not on this thread: a task
    // is run by the runtime thread whose event loop saw the connection
    // come, where this thread would have to be woken for each one.
    let workers = Arc::new(workers);
    let serving = tokio::spawn({
        let workers = workers.clone();
        async move {
            match listening {
                Listening::Shared(listener) => {
                    server::serve_on(listener, gateway, shutdown, &workers).await
                }
                Listening::EachWorker(listeners) => {
                    server::serve_each_worker_on(listeners, gateway, shutdown, &workers).await
                }
            }
        }
    });
    let result = serving
        .await
        .unwrap_or_else(|error| Err(std::io::Error::other(error.to_string())));
    watcher.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    let _ = tokio::task::spawn_blocking(move || {
        // The serving task, ended, holds no other handle.
        if let Ok(workers) = Arc::try_unwrap(workers) {
            workers.stop();
        }
        // The decisions of the last requests are in the audit log before
        // the process ends (they were only queued).
        last.finish_audit(AUDIT_FINISH);
    })
    .await;
    finish(result)
}

/// Where `serve` accepts connections: one listener whose connections are
/// handed to the workers, or one for each worker (`reuse_port`).
enum Listening {
    Shared(TcpListener),
    EachWorker(Vec<std::net::TcpListener>),
}

impl Listening {
    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Listening::Shared(listener) => listener.local_addr(),
            Listening::EachWorker(listeners) => listeners.first().map_or_else(
                || Err(std::io::ErrorKind::NotFound.into()),
                |l| l.local_addr(),
            ),
        }
    }
}

fn run_addons(path: &std::path::Path, format: Format) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return fail(format!("config error: {error}")),
    };
    let states = match &config.state_file {
        Some(file) => match supervisor_gateway::protection_state::read(file) {
            Ok(states) => states,
            Err(error) => {
                let error = config.file_error("state_file", error);
                return fail(format!("config error: {error}"));
            }
        },
        None => Default::default(),
    };
    let rows = supervisor_gateway::addons_view::rows(&config, &states);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ),
        Format::Text | Format::Markdown => {
            print!("{}", supervisor_gateway::addons_view::text(&rows))
        }
    }
    let mut left_out = false;
    for problem in &config.manifest_problems {
        eprintln!("supervisor-gateway: {}: {problem}", problem.cost.headline());
        left_out |= problem.cost == supervisor_gateway::manifests::ProblemCost::ManifestLeftOut;
    }
    // A script checking its manifests learns from the exit code that an
    // add-on is missing from the rows (an unused secret is only a warning).
    if left_out {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_advise(path: &std::path::Path, audit: &std::path::Path, format: Format) -> ExitCode {
    let (config, table) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let (entries, bad) = match supervisor_gateway::audit::read(audit) {
        Ok(read) => read,
        Err(error) => return fail(error),
    };
    if !bad.is_empty() {
        eprintln!(
            "supervisor-gateway: {}: {} lines are not audit entries (first: line {})",
            audit.display(),
            bad.len(),
            bad[0]
        );
    }
    let advice = supervisor_gateway::advise::advise(&config, &table, &entries);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&advice).unwrap_or_default()
        ),
        Format::Text | Format::Markdown => print!("{}", supervisor_gateway::advise::text(&advice)),
    }
    ExitCode::SUCCESS
}

async fn run_healthcheck(admin: SocketAddr) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        let request = "GET /healthz HTTP/1.1\r\nHost: healthcheck\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(Some(true)) => ExitCode::SUCCESS,
        _ => {
            eprintln!("supervisor-gateway: {admin}/healthz did not answer 200");
            ExitCode::from(1)
        }
    }
}

/// Installs the metrics recorder and starts the admin listener.
fn start_admin(
    listener: TcpListener,
    gateway: &Arc<Gateway>,
    upstream: &http::uri::Authority,
) -> Result<tokio::task::JoinHandle<()>, ExitCode> {
    let metrics = supervisor_gateway::metrics::install()
        .map_err(|error| fail(format!("cannot set up metrics: {error}")))?;
    let Ok(bound) = listener.local_addr() else {
        return Err(fail("the admin listener has no address".to_owned()));
    };
    tracing::info!(admin = %bound, "admin listener: /healthz /readyz /metrics");
    let served =
        supervisor_gateway::admin::serve(listener, gateway.clone(), upstream.clone(), metrics);
    Ok(tokio::spawn(async move {
        if let Err(error) = served.await {
            tracing::error!(%error, "the admin listener stopped");
        }
    }))
}

async fn run_demo(listen: SocketAddr) -> ExitCode {
    let shutdown = signals::shutdown();
    let started = match demo::start(listen).await {
        Ok(started) => started,
        Err(error) => return fail(error),
    };
    let bound = started.listener.local_addr().unwrap_or(listen);
    println!("{}", demo::banner(bound, started.mock.addr()));
    let result = server::serve(started.listener, started.gateway, shutdown).await;
    started.mock.stop().await;
    finish(result)
}

async fn run_mock(listen: SocketAddr) -> ExitCode {
    let shutdown = signals::shutdown();
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(format!("cannot listen on {listen}: {error}")),
    };
    // Nothing in this process reads the mock's log.
    let state = mock_upstream::MockState::unrecorded();
    finish(mock_upstream::serve(listener, state, shutdown).await)
}

fn run_check(args: CheckArgs) -> ExitCode {
    let (config, table) = match load(&args.config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let who = match (args.who.token, args.who.addon, args.who.caller) {
        (Some(token), _, _) if token == "-" => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                return fail("cannot read the token from standard input");
            }
            Who::Token(line.trim().to_owned())
        }
        (Some(token), _, _) => Who::Token(token),
        (_, Some(slug), _) => Who::Addon(slug),
        (_, _, Some(kind)) => Who::Kind(kind),
        (None, None, None) => return fail("name a caller with --token, --addon or --caller"),
    };
    match check::run(config, table, who, &args.method, &args.target) {
        Ok((judgement, text)) => {
            print!("{text}");
            ExitCode::from(if judgement.decision.allowed() { 0 } else { 1 })
        }
        Err(error) => fail(error),
    }
}

/// How long a stopping gateway waits for the audit log to take its last
/// lines (a disk or a pipe's reader that stalled is not waited on longer).
const AUDIT_FINISH: std::time::Duration = std::time::Duration::from_secs(2);

fn finish(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}
