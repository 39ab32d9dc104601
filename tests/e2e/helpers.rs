//! Shared helpers: the mock upstream with a gateway in front of it on
//! loopback port 0, tokens for every kind of caller, and a raw HTTP/1.1
//! client that sends exactly the bytes it is given.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use supervisor_gateway::config::Config;
use supervisor_gateway::gateway::Gateway;
use supervisor_gateway::mock_upstream::{self, MockHandle, MockState, Recorded};
use supervisor_gateway::server;
use supervisor_gateway::table::Table;

pub(crate) const TOK_DEFAULT: &str = "4a1f0c7e9b2d46a8b3e5c7d9f1a2b4c6d8e0f1a3b5c7d9e1";
pub(crate) const TOK_NOAPI: &str = "5b2e1d8f0c3a47b9c4f6d8e0a2b3c5d7e9f1a2b4c6d8e0f2";
pub(crate) const TOK_HA: &str = "6c3f2e9a1d4b58c0d5a7e9f1b3c4d6e8f0a2b3c5d7e9f1a3";
pub(crate) const TOK_BACKUP: &str = "7d4a3f0b2e5c69d1e6b8f0a2c4d5e7f9a1b3c4d6e8f0a2b4";
pub(crate) const TOK_MANAGER: &str = "8e5b4a1c3f6d70e2f7c9a1b3d5e6f8a0b2c4d5e7f9a1b3c5";
pub(crate) const TOK_ADMIN: &str = "9f6c5b2d4a7e81f3a8d0b2c4e6f7a9b1c3d5e6f8a0b2c4d6";
pub(crate) const TOK_AUTH: &str = "a07d6c3e5b8f92a4b9e1c3d5f7a8b0c2d4e6f7a9b1c3d5e7";
pub(crate) const TOK_CORE: &str = "b18e7d4f6c9a03b5c0f2d4e6a8b9c1d3e5f7a8b0c2d4e6f8";
pub(crate) const TOK_CLI: &str = "c29f8e5a7d0b14c6d1a3e5f7b9c0d2e4f6a8b9c1d3e5f7a9";
pub(crate) const TOK_OBSERVER: &str = "d30a9f6b8e1c25d7e2b4f6a8c0d1e3f5a7b9c0d2e4f6a8b0";
pub(crate) const TOK_UNKNOWN: &str = "e41b0a7c9f2d36e8f3c5a7b9d1e2f4a6b8c0d1e3f5a7b9c1";

/// Every token the test configuration knows.
pub(crate) const ALL_TOKENS: [&str; 10] = [
    TOK_DEFAULT,
    TOK_NOAPI,
    TOK_HA,
    TOK_BACKUP,
    TOK_MANAGER,
    TOK_ADMIN,
    TOK_AUTH,
    TOK_CORE,
    TOK_CLI,
    TOK_OBSERVER,
];

/// The test configuration: the callers of ../shared/hostile-requests.md.
pub(crate) fn test_config_yaml(upstream: SocketAddr) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
upstream: http://{upstream}
admin_listen: none
identity_headers: true
tokens:
  homeassistant: {TOK_CORE}
  cli: {TOK_CLI}
  observer: {TOK_OBSERVER}
addons:
  - {{ slug: local_probe, token: {TOK_DEFAULT}, hassio_api: true }}
  - {{ slug: local_noapi, token: {TOK_NOAPI} }}
  - {{ slug: local_ha, token: {TOK_HA}, hassio_api: true, hassio_role: homeassistant, homeassistant_api: true }}
  - {{ slug: local_backup, token: {TOK_BACKUP}, hassio_api: true, hassio_role: backup }}
  - {{ slug: local_manager, token: {TOK_MANAGER}, hassio_api: true, hassio_role: manager }}
  - {{ slug: local_admin, token: {TOK_ADMIN}, hassio_api: true, hassio_role: admin }}
  - {{ slug: local_auth, token: {TOK_AUTH}, auth_api: true }}
limits:
  upstream_connect_timeout_ms: 500
  upstream_response_timeout_ms: 2000
  shutdown_grace_ms: 1000
"#
    )
}

/// A gateway on loopback in front of the mock upstream.
pub(crate) struct TestGateway {
    pub(crate) addr: SocketAddr,
    pub(crate) mock: MockHandle,
    pub(crate) gateway: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestGateway {
    /// Starts the mock and a gateway with the test configuration.
    pub(crate) async fn start() -> TestGateway {
        let mock = start_mock().await;
        let config = Config::from_yaml(&test_config_yaml(mock.addr()), "test config")
            .expect("the test config is valid");
        TestGateway::with_config(config, mock).await
    }

    /// Starts a gateway with the test configuration in front of `upstream`
    /// (a fake one of the test's), `mock` standing by.
    pub(crate) async fn in_front_of(upstream: SocketAddr, mock: MockHandle) -> TestGateway {
        let config = Config::from_yaml(&test_config_yaml(upstream), "test config")
            .expect("the test config is valid");
        TestGateway::with_config(config, mock).await
    }

    /// Starts a gateway with a given configuration in front of `mock`.
    pub(crate) async fn with_config(config: Config, mock: MockHandle) -> TestGateway {
        let table = Table::builtin().expect("the default table loads");
        TestGateway::serving(Gateway::new(config, table), mock).await
    }

    /// Starts a gateway from a configuration file, as `serve` does, with
    /// the audit log it names, if any.
    pub(crate) async fn from_file(path: &Path, mock: MockHandle) -> TestGateway {
        let config = Config::load(path).expect("the test config loads");
        let audit_log = config.audit_log.clone();
        let mut gateway = Gateway::from_config(config).expect("the test tables load");
        if let Some(audit_log) = audit_log {
            let audit = supervisor_gateway::audit::Audit::open(&audit_log).expect("audit log");
            gateway = gateway.with_audit(audit);
        }
        TestGateway::serving(gateway, mock).await
    }

    async fn serving(gateway: Gateway, mock: MockHandle) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = listener.local_addr().expect("gateway address");
        let gateway = Arc::new(gateway);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, gateway.clone(), async {
            let _ = stopped.await;
        }));
        TestGateway {
            addr,
            mock,
            gateway,
            stop: Some(stop),
        }
    }

    /// Stops the gateway (as SIGTERM does `serve`), leaving the mock up.
    pub(crate) fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// What reached the upstream since the last call.
    pub(crate) fn upstream_saw(&self) -> Vec<Recorded> {
        self.mock.state().take()
    }

    /// Sends one request built from parts and returns the response.
    pub(crate) async fn send(&self, request: &RawRequest<'_>) -> RawResponse {
        send_raw(self.addr, &request.to_bytes()).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts the mock upstream on loopback port 0.
pub(crate) async fn start_mock() -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    mock_upstream::spawn(listener, MockState::new()).expect("mock starts")
}

/// One request written out by hand, so that nothing rewrites it.
pub(crate) struct RawRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) headers: Vec<(&'a str, String)>,
    pub(crate) body: Vec<u8>,
}

impl<'a> RawRequest<'a> {
    pub(crate) fn new(method: &'a str, target: &'a str) -> RawRequest<'a> {
        RawRequest {
            method,
            target,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &'a str, value: impl Into<String>) -> RawRequest<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn token(self, token: &str) -> RawRequest<'a> {
        self.header("X-Supervisor-Token", token)
    }

    pub(crate) fn body(mut self, body: &[u8]) -> RawRequest<'a> {
        self.body = body.to_vec();
        self
    }

    /// The request's bytes: the headers given, plus Host, Content-Length and
    /// `Connection: close` unless given.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            out.extend_from_slice(b"Host: supervisor\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !has("content-length") && !has("transfer-encoding") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if !has("connection") {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes `bytes` to a fresh connection and reads the response until the
/// server closes it (every helper request says `Connection: close`).
pub(crate) async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    parse_response(&exchange_raw(addr, bytes).await)
}

/// Writes `bytes` to a fresh connection and returns every byte the server
/// sends until it closes the connection, within 10 s.
pub(crate) async fn exchange_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write request");
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received).await;
        received
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the exchange finishes within 10 s")
}

/// Parses one HTTP/1.1 response, de-chunking its body if needed.
pub(crate) fn parse_response(received: &[u8]) -> RawResponse {
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no response head in {:?}",
                String::from_utf8_lossy(received)
            )
        });
    let head = String::from_utf8_lossy(&received[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw_body = &received[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// Asserts the upstream received nothing, naming the case.
pub(crate) fn assert_upstream_silent(gateway: &TestGateway, case: &str) {
    let seen = gateway.upstream_saw();
    assert!(
        seen.is_empty(),
        "{case}: upstream received {:?}",
        seen.iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

/// Asserts the response is the gateway's own error envelope with `status`.
pub(crate) fn assert_refused(response: &RawResponse, status: u16, case: &str) {
    assert_eq!(
        response.status,
        status,
        "{case}: {}",
        String::from_utf8_lossy(&response.body)
    );
    let json = response.json();
    assert_eq!(json["result"], "error", "{case}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}"
    );
}

/// The gateway binary built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_supervisor-gateway");

/// Writes a test file into `dir`.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// Runs the binary (`RUST_LOG=warn`) to its end.
pub(crate) fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the binary")
}

/// The trimmed standard output of a run that must have succeeded.
pub(crate) fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The element of a JSON array whose `field` is `value`.
pub(crate) fn row_where<'a>(
    rows: &'a serde_json::Value,
    field: &str,
    value: &str,
) -> &'a serde_json::Value {
    rows.as_array()
        .expect("a JSON array")
        .iter()
        .find(|row| row[field] == value)
        .unwrap_or_else(|| panic!("no row with {field} = {value}"))
}

/// A running `serve` process whose stderr is collected.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
}

pub(crate) fn spawn_serve(config: &Path, rust_log: &str) -> Served {
    spawn_serve_with(config, rust_log, &[])
}

/// `serve` with extra arguments (such as `--log-format json`).
pub(crate) fn spawn_serve_with(config: &Path, rust_log: &str, extra: &[&str]) -> Served {
    spawn_serve_to(config, rust_log, extra, Stdio::null())
}

/// As [`spawn_serve_with`], with the process's standard output on `stdout`.
pub(crate) fn spawn_serve_to(
    config: &Path,
    rust_log: &str,
    extra: &[&str],
    stdout: Stdio,
) -> Served {
    let mut child = Command::new(BIN)
        .args(extra)
        .args(["serve", "--config", config.to_str().expect("utf-8 path")])
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .stdout(stdout)
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = addr_tx.send(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if let Some(rest) = line.split("\"listen\":\"").nth(1) {
                let _ = addr_tx.send(rest.split('"').next().unwrap_or_default().to_owned());
            }
            let mut log = sink.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(20));
    let Some(addr) = addr.ok().and_then(|addr| addr.parse().ok()) else {
        // Not left running behind the failed test.
        let _ = child.kill();
        let _ = child.wait();
        let log = log.lock().expect("log lock");
        panic!("serve logs no address it listens on (at RUST_LOG={rust_log}?):\n{log}");
    };
    Served { child, addr, log }
}

impl Served {
    /// Sends one request built from parts and returns the response.
    pub(crate) async fn send(&self, request: &RawRequest<'_>) -> RawResponse {
        send_raw(self.addr, &request.to_bytes()).await
    }

    /// Waits until the log holds `needle` `count` times; false on timeout.
    pub(crate) fn wait_for_log(&self, needle: &str, count: usize, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.log.lock().expect("log lock").matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal (by name, e.g. HUP) to the process.
    pub(crate) fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// The process's peak resident memory so far (Linux `VmHWM`), in KiB.
    pub(crate) fn peak_kib(&self) -> u64 {
        self.memory_kib("VmHWM:")
    }

    /// The process's resident memory now (Linux `VmRSS`), in KiB.
    pub(crate) fn resident_kib(&self) -> u64 {
        self.memory_kib("VmRSS:")
    }

    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("this test needs Linux /proc");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("the field in /proc/PID/status")
    }

    /// The log so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Sends SIGTERM and returns the exit code and the whole log.
    pub(crate) fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait for serve");
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().expect("log lock").clone();
        (status.code(), log)
    }
}

impl Drop for Served {
    /// A test that fails before `stop` leaves no gateway running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a request from a task of its own, for requests that overlap others.
pub(crate) fn spawn_send(addr: SocketAddr, bytes: Vec<u8>) -> tokio::task::JoinHandle<RawResponse> {
    tokio::spawn(async move { send_raw(addr, &bytes).await })
}

/// The test config plus extra `limits` lines.
pub(crate) fn config_with_limits(upstream: SocketAddr, extra: &str) -> String {
    test_config_yaml(upstream).replace("limits:\n", &format!("limits:\n{extra}"))
}

/// `serve` as a process in front of a mock of its own, with the test
/// config plus extra `limits` lines, logging at `rust_log`. The mock and
/// the config's folder last as long as the values returned.
pub(crate) async fn serve_with_mock(
    extra_limits: &str,
    rust_log: &str,
) -> (Served, MockHandle, tempfile::TempDir) {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config_with_limits(mock.addr(), extra_limits);
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), rust_log);
    (served, mock, dir)
}

/// A gateway with the test config plus extra `limits` lines.
pub(crate) async fn gateway_with_limits(extra: &str) -> TestGateway {
    let mock = start_mock().await;
    let text = config_with_limits(mock.addr(), extra);
    let config = Config::from_yaml(&text, "test config").expect("config with limits");
    TestGateway::with_config(config, mock).await
}

/// A gateway with the test config plus `upstream_token: own`.
pub(crate) async fn gateway_with_upstream_token(own: &str) -> TestGateway {
    let mock = start_mock().await;
    let text = format!("{}upstream_token: {own}\n", test_config_yaml(mock.addr()));
    let config = Config::from_yaml(&text, "test config").expect("config with upstream_token");
    TestGateway::with_config(config, mock).await
}

/// A gateway read from a config file (the test config, not watched), to be
/// rewritten and reloaded: the gateway, the file, its text, and its folder
/// (which must outlive the test).
pub(crate) async fn reloadable_gateway() -> (TestGateway, PathBuf, String, tempfile::TempDir) {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}watch_interval_ms: 0\n", test_config_yaml(mock.addr()));
    let path = write(dir.path(), "gateway.yaml", &text);
    let gateway = TestGateway::from_file(&path, mock).await;
    (gateway, path, text, dir)
}

/// `GET /supervisor/ping` on a new connection, in a task of its own.
pub(crate) fn spawn_ping(addr: SocketAddr) -> tokio::task::JoinHandle<RawResponse> {
    spawn_send(addr, RawRequest::new("GET", "/supervisor/ping").to_bytes())
}

/// The status of the answer `waiting` gets, if it comes within `within`
/// (a new connection waits while `max_connections` are taken).
pub(crate) async fn status_within(
    waiting: tokio::task::JoinHandle<RawResponse>,
    within: Duration,
) -> Option<u16> {
    let answered = tokio::time::timeout(within, waiting).await.ok()?;
    Some(answered.expect("task").status)
}

/// Reads until the peer closes, or gives up after `within`; true if closed.
pub(crate) async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let (_, ending) = read_to_close(stream, 4096, Duration::ZERO, within).await;
    ending != Ending::Open
}

/// How a connection read by [`read_to_close`] ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Ending {
    /// The gateway closed it in order (end of file).
    Closed,
    /// The gateway reset it.
    Reset,
    /// Reading it failed otherwise.
    Failed,
    /// It was still open at the time limit.
    Open,
}

/// Reads up to `chunk` bytes at a time, `pause` after each read, until the
/// gateway closes or `within` has passed; the bytes read, and how it ended.
pub(crate) async fn read_to_close(
    stream: &mut TcpStream,
    chunk: usize,
    pause: Duration,
    within: Duration,
) -> (u64, Ending) {
    let mut buffer = vec![0u8; chunk];
    let mut total = 0u64;
    let deadline = Instant::now() + within;
    // (A read that is ready at once wins over a passed deadline.)
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) => return (total, Ending::Closed),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return (total, Ending::Reset)
            }
            Ok(Err(_)) => return (total, Ending::Failed),
            Ok(Ok(read)) => total += read as u64,
            Err(_) => return (total, Ending::Open),
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    (total, Ending::Open)
}

/// A client on one kept-alive connection, reading answers that carry a
/// Content-Length one at a time.
pub(crate) struct KeptAlive {
    pub(crate) stream: TcpStream,
    received: Vec<u8>,
}

impl KeptAlive {
    pub(crate) async fn connect(addr: SocketAddr) -> KeptAlive {
        let stream = TcpStream::connect(addr).await.expect("connect");
        KeptAlive {
            stream,
            received: Vec::new(),
        }
    }

    pub(crate) async fn write(&mut self, bytes: &str) {
        self.stream
            .write_all(bytes.as_bytes())
            .await
            .expect("write");
    }

    pub(crate) async fn answer(&mut self) -> RawResponse {
        loop {
            if let Some(end) = self.complete_answer() {
                let answer: Vec<u8> = self.received.drain(..end).collect();
                return parse_response(&answer);
            }
            let mut buffer = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buffer))
                .await
                .expect("an answer within 5 s")
                .expect("read");
            assert!(read > 0, "closed before a whole answer came");
            self.received.extend_from_slice(&buffer[..read]);
        }
    }

    /// The length of the first whole answer received, if there is one.
    fn complete_answer(&self) -> Option<usize> {
        let head_end = self.received.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.received[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .expect("answers here carry a Content-Length")
            .trim()
            .parse()
            .expect("a length");
        (self.received.len() >= head_end + length).then_some(head_end + length)
    }
}

/// Asserts that a new request waits while every connection slot is taken,
/// and is served once `free` has given one back.
pub(crate) async fn served_only_once_freed(addr: SocketAddr, free: impl FnOnce(), case: &str) {
    let waiting = spawn_ping(addr);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "{case}: served past the limit");
    free();
    let status = status_within(waiting, Duration::from_secs(5)).await;
    assert_eq!(status.expect("served once a slot is free"), 200, "{case}");
}

/// A fake upstream on a port of its own: each connection is handed, with
/// the first bytes read from it (a request head), to `serve` in a task of
/// its own.
pub(crate) async fn fake_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let n = stream.read(&mut head).await.unwrap_or(0);
                head.truncate(n);
                serve(stream, head).await;
            });
        }
    });
    addr
}

/// The audit log at `path` once it holds `count` entries (or after 5 s,
/// whatever it holds then); every line of it must be an entry.
pub(crate) async fn audit_entries(
    path: &Path,
    count: usize,
) -> Vec<supervisor_gateway::audit::Entry> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (entries, bad) = supervisor_gateway::audit::read(path).unwrap_or_default();
        assert!(bad.is_empty(), "every audit line is an entry");
        if entries.len() >= count || std::time::Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// bashio's GET on a kept-alive connection (curl does not close it unless
/// told).
pub(crate) fn bashio_kept_alive(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: supervisor\r\nAuthorization: Bearer {TOK_DEFAULT}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
}
