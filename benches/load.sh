#!/usr/bin/env bash
# Load benchmark, loopback only: the mock upstream (or an upstream given as
# host:port on loopback), the gateway and a plain nginx reverse proxy (and the same nginx sending
# the three X-Forwarded-* headers the gateway sends, and a minimal tokio
# proxy doing the same forwarding, examples/floor_proxy.rs) in
# front of the same upstream, each driven in turn by wrk over keep-alive
# connections, then the gateway and plain nginx again with a new connection
# for every request (as an add-on calling the API with curl makes one; and
# a second gateway with `reuse_port: true`), and so with bashio's GET (a
# `{}` body and `Authorization: Bearer` besides);
# then 1 GiB transfers through the gateway against the same
# transfers straight to the upstream, the gateway's memory, and 10,000 idle
# keep-alive connections. Every process it starts is stopped at the end.
#
#   bash benches/load.sh [UPSTREAM_HOST:PORT]
#
# Knobs: ROUNDS (3), DURATION (s, default 10), CONNECTIONS (64), THREADS (2), SIZE_MIB
# (1024), IDLE (10000), MAX_HEADER_BYTES (the gateway's limits.max_header_bytes,
# 32768), WORKERS (the gateway's workers, nginx's worker_processes and the
# floor's threads alike; default one a core, as each has by default).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-$(nproc)}
case "$WORKERS" in
  ""|*[!0-9]*|0) echo "load.sh: WORKERS must be a number above 0" >&2; exit 2 ;;
esac
SIZE_MIB=${SIZE_MIB:-1024}
IDLE=${IDLE:-10000}
UPSTREAM=${1:-}
# An upstream given on the command line is not ours to measure the CPU of.
UPSTREAM_PIDS=()
case "$UPSTREAM" in
  ""|127.*|localhost:*|"[::1]":*) ;;
  *) echo "load.sh: the upstream must be on loopback" >&2; exit 2 ;;
esac

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk || ! need curl; then
  had_nginx=$(need nginx && echo yes || true)
  echo "== installing nginx-light, wrk and curl (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl >/dev/null
  # A newly installed package starts a default server on port 80; this
  # benchmark runs its own. An nginx that was there before is left alone.
  if [ -z "$had_nginx" ]; then
    service nginx stop >/dev/null 2>&1 || true
  fi
fi
ulimit -n 65536 2>/dev/null || true

echo "== building the release binary"
cargo build --release --quiet --bin supervisor-gateway --example floor_proxy
# (Where cargo put them: CARGO_TARGET_DIR or its config may move them.)
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null \
  || echo target)
BIN=$TARGET_DIR/release/supervisor-gateway
FLOOR_BIN=$TARGET_DIR/release/examples/floor_proxy
for built in "$BIN" "$FLOOR_BIN"; do
  [ -x "$built" ] || { echo "load.sh: $built was not built" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "load.sh: nothing listens on port $1" >&2; return 1
}

if [ -z "$UPSTREAM" ]; then
  MOCK_PORT=$(free_port)
  RUST_LOG=warn "$BIN" mock-upstream --listen "127.0.0.1:$MOCK_PORT" 2>"$WORK/mock.log" &
  PIDS+=($!)
  UPSTREAM_PIDS=($!)
  wait_port "$MOCK_PORT" || { cat "$WORK/mock.log" >&2; exit 1; }
  UPSTREAM="127.0.0.1:$MOCK_PORT"
fi

GATEWAY_PORT=$(free_port)
TOKEN=bench-token-0123456789abcdef
cat >"$WORK/gateway.yaml" <<EOF
listen: 127.0.0.1:$GATEWAY_PORT
upstream: http://$UPSTREAM
watch_interval_ms: 0
admin_listen: 127.0.0.1:0
workers: $WORKERS
addons:
  - { slug: bench, token: $TOKEN, hassio_api: true, hassio_role: manager }
limits:
  header_read_timeout_ms: 120000
  keep_alive_timeout_ms: 120000
  max_connections: 20000
  max_header_bytes: ${MAX_HEADER_BYTES:-32768}
EOF
RUST_LOG=warn "$BIN" serve --config "$WORK/gateway.yaml" 2>"$WORK/gateway.log" &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)
wait_port "$GATEWAY_PORT" || { cat "$WORK/gateway.log" >&2; exit 1; }
# The same gateway with `reuse_port: true` (each worker accepting on a
# listener of its own), driven only with a new connection for each request.
REUSE_PORT=$(free_port)
while [ "$REUSE_PORT" = "$GATEWAY_PORT" ]; do REUSE_PORT=$(free_port); done
sed -e "s/^listen: .*/listen: 127.0.0.1:$REUSE_PORT/" "$WORK/gateway.yaml" >"$WORK/gateway-reuse.yaml"
echo "reuse_port: true" >>"$WORK/gateway-reuse.yaml"
RUST_LOG=warn "$BIN" serve --config "$WORK/gateway-reuse.yaml" 2>"$WORK/gateway-reuse.log" &
REUSE_PID=$!
PIDS+=($REUSE_PID)
wait_port "$REUSE_PORT" || { cat "$WORK/gateway-reuse.log" >&2; exit 1; }

NGINX_PORT=$(free_port)
# A second server of the same nginx sends the upstream the three
# X-Forwarded-* headers the gateway must set (SPEC, "Forwarding"), so that
# the upstream does the same work behind both; the plain one is the target's
# comparison.
NGINX_FWD_PORT=$(free_port)
# (Neither is bound yet, so both may be the same free port; nginx would then
# take the second server on it with a warning, and the fourth row would be
# the plain nginx again.)
while [ "$NGINX_FWD_PORT" = "$NGINX_PORT" ]; do NGINX_FWD_PORT=$(free_port); done
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  upstream supervisor { server $UPSTREAM; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    client_max_body_size 0;
    location / {
      proxy_pass http://supervisor;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_FWD_PORT;
    client_max_body_size 0;
    location / {
      proxy_pass http://supervisor;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX_MASTER=$!
PIDS+=($NGINX_MASTER)
wait_port "$NGINX_PORT" || { cat "$WORK/nginx-error.log" >&2; exit 1; }
wait_port "$NGINX_FWD_PORT" || { cat "$WORK/nginx-error.log" >&2; exit 1; }
# The master and its workers, for the CPU they spend.
# (The master may listen before it has started all its workers.)
for _ in $(seq 50); do
  [ "$(pgrep -c -P "$NGINX_MASTER")" -ge "$WORKERS" ] && break
  sleep 0.1
done
NGINX_PIDS=($NGINX_MASTER $(pgrep -P "$NGINX_MASTER"))

# The floor: what a tokio proxy forwarding as the SPEC asks, with no
# decision, limits or timeouts, spends in front of the same upstream.
FLOOR_PORT=$(free_port)
"$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "${UPSTREAM/#localhost:/127.0.0.1:}" "$WORKERS" \
  2>"$WORK/floor.log" &
FLOOR_PID=$!
PIDS+=($FLOOR_PID)
wait_port "$FLOOR_PORT" || { cat "$WORK/floor.log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GATEWAY_PID/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$GATEWAY_PID/status"; }
IDLE_RSS=$(rss_kib)

# ---- 1 GiB transfers ---------------------------------------------------------
BYTES=$((SIZE_MIB * 1024 * 1024))
# Uploads are sent from a file, with its length, as a client uploads a
# backup file; and streamed from a pipe, which curl sends chunked.
head -c "$BYTES" /dev/zero >"$WORK/upload.bin"
# A transfer counts only if it was answered 200 and moved every byte: a
# refused or cut-off transfer would otherwise be timed as a fast one.
timed() { # WHAT "CODE UPLOADED DOWNLOADED SECONDS" FIELD: MiB/s, or fails the run
  local what=$1 code up down seconds moved
  read -r code up down seconds <<<"$2"
  moved=$([ "$3" = up ] && echo "$up" || echo "$down")
  moved=${moved%.*}
  # (curl counts a chunked upload's chunk lines as uploaded bytes.)
  if [ "$code" != 200 ] || [ "$moved" -lt "$BYTES" ] || { [ "$3" = down ] && [ "$moved" != "$BYTES" ]; }; then
    echo "load.sh: $what answered $code after moving $moved of $BYTES bytes" >&2
    exit 1
  fi
  python3 -c "print(f'{$SIZE_MIB/$seconds:.0f}')"
}
CURL_OUT='%{http_code} %{size_upload} %{size_download} %{time_total}'
upload() { # BASE [curl options]: MiB/s
  local base=$1
  shift
  timed "upload to $base" "$(curl -s -o /dev/null -w "$CURL_OUT" "$@" -X POST \
        -H "X-Supervisor-Token: $TOKEN" -H 'Content-Type: application/octet-stream' \
        "$base/backups/new/upload")" up
}
transfer() { # BASE: prints MiB/s for the file upload, the streamed upload, the download
  local base=$1 file streamed down
  file=$(upload "$base" -T "$WORK/upload.bin") || exit 1
  streamed=$(head -c "$BYTES" /dev/zero | upload "$base" -T -) || exit 1
  down=$(timed "download from $base" "$(curl -s -o /dev/null -w "$CURL_OUT" \
        -H "X-Supervisor-Token: $TOKEN" "$base/backups/abc123/download?size=$BYTES")" down) || exit 1
  echo "$file $streamed $down"
}
echo "== ${SIZE_MIB} MiB uploads and download, direct and through the gateway, ${ROUNDS} rounds"
# Direct and through the gateway in turn, ROUNDS times over, as the small
# GETs below; each figure is the median over the rounds. (Assigned first,
# so that a failed transfer ends the run.)
for round in $(seq "$ROUNDS"); do
  DIRECT=$(transfer "http://$UPSTREAM")
  GW=$(transfer "http://127.0.0.1:$GATEWAY_PORT")
  echo "$DIRECT" >>"$WORK/direct.transfers"
  echo "$GW" >>"$WORK/gateway.transfers"
done
transfer_medians() { # FILE: the median of each column, then the gateway's
  # share of direct in each round of each column ("87/90/85%"), if a second
  # FILE is given
  python3 - "$@" <<'PY'
import statistics, sys
def rows(name):
    return [[float(v) for v in line.split()] for line in open(name) if line.strip()]
mine = rows(sys.argv[1])
medians = [f"{statistics.median(c):.0f}" for c in zip(*mine)]
if len(sys.argv) > 2:
    direct = rows(sys.argv[2])
    shares = ["/".join(f"{g / d * 100:.0f}" for g, d in zip(gc, dc)) + "%"
              for gc, dc in zip(zip(*mine), zip(*direct))]
    medians = [f"{m} ({s})" for m, s in zip(medians, shares)]
print("\t".join(medians))
PY
}
IFS=$'\t' read -r DIRECT_UP DIRECT_STREAM DIRECT_DOWN < <(transfer_medians "$WORK/direct.transfers")
IFS=$'\t' read -r GW_UP GW_STREAM GW_DOWN < <(transfer_medians "$WORK/gateway.transfers" "$WORK/direct.transfers")
rm -f "$WORK/upload.bin"
PEAK_RSS=$(hwm_kib)

# ---- small GETs, side by side --------------------------------------------------
cpu_ticks() { # PID...: user plus system clock ticks the processes used so far
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
task_ticks() { # PID...: "thread-id ticks" for every thread of the processes
  local pid task
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      awk -v id="${task##*/}" '{print id, $14 + $15}' "$task/stat" 2>/dev/null || true
    done
  done
}
run_wrk() { # URL PID...: prints "requests/s p50 p99 cpu upstream-cpu busiest",
  # cpu being the microseconds of CPU (user and system) the PIDs spent per
  # request, upstream-cpu those the upstream (ours, not one given) spent,
  # busiest the share of the PIDs' CPU that their busiest thread spent (how
  # evenly the connections fell on the workers: 50% is even for two)
  local url=$1 before after up_before up_after
  shift
  before=$(cpu_ticks "$@")
  up_before=$(cpu_ticks "${UPSTREAM_PIDS[@]}")
  task_ticks "$@" >"$WORK/tasks.before"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
      "${WRK_TOKEN[@]}" "${WRK_HEADERS[@]}" "$url" >"$WORK/wrk.out"
  task_ticks "$@" >"$WORK/tasks.after"
  after=$(cpu_ticks "$@")
  up_after=$(cpu_ticks "${UPSTREAM_PIDS[@]}")
  python3 - "$WORK/wrk.out" "$((after - before))" "$(getconf CLK_TCK)" "$#" \
      "$((up_after - up_before))" "${#UPSTREAM_PIDS[@]}" "$WORK/tasks.before" "$WORK/tasks.after" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, per_second, measured = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
up_ticks, up_measured = int(sys.argv[5]), int(sys.argv[6])
def tasks(name):
    return dict(line.split() for line in open(name) if line.strip())
before, after = tasks(sys.argv[7]), tasks(sys.argv[8])
spent = [int(t) - int(before.get(task, 0)) for task, t in after.items()]
busiest = max(spent) / sum(spent) * 100 if sum(spent) > 0 else float("nan")
# Only answered, successful requests count: wrk counts the others too.
for failed in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*"):
    found = re.search(failed, text)
    if found:
        sys.exit(f"load.sh: wrk saw failures ({found.group(0)}):\n{text}")
requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = ticks / per_second * 1e6 / requests if measured else float("nan")
up_us = up_ticks / per_second * 1e6 / requests if up_measured else float("nan")
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
def pct(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
print(f"{float(rps):.0f} {pct(50):.2f} {pct(99):.2f} {cpu_us:.1f} {up_us:.1f} {busiest:.0f}")
PY
}
WRK_TOKEN=(-H "X-Supervisor-Token: $TOKEN")
WRK_HEADERS=()
echo "== small GET /os/info: ${THREADS} threads, ${CONNECTIONS} keep-alive connections, ${DURATION} s each, ${ROUNDS} rounds, ${WORKERS} worker(s) for each proxy"
# The five in turn, ROUNDS times over, so that a noisy stretch of the
# machine falls on all of them; each figure is the median over the rounds.
for round in $(seq "$ROUNDS"); do
  echo "   round $round of $ROUNDS"
  run_wrk "http://$UPSTREAM/os/info" "${UPSTREAM_PIDS[@]}" >>"$WORK/direct.runs"
  run_wrk "http://127.0.0.1:$NGINX_PORT/os/info" "${NGINX_PIDS[@]}" >>"$WORK/nginx.runs"
  run_wrk "http://127.0.0.1:$GATEWAY_PORT/os/info" "$GATEWAY_PID" >>"$WORK/gateway.runs"
  run_wrk "http://127.0.0.1:$NGINX_FWD_PORT/os/info" "${NGINX_PIDS[@]}" >>"$WORK/nginx-fwd.runs"
  run_wrk "http://127.0.0.1:$FLOOR_PORT/os/info" "$FLOOR_PID" >>"$WORK/floor.runs"
done
# A new connection for every request: wrk asks for it with `Connection:
# close`, which each proxy answers and then closes.
WRK_HEADERS=(-H "Connection: close")
echo "== small GET /os/info, a new connection for each request: ${THREADS} threads, ${CONNECTIONS} at once, ${DURATION} s each, ${ROUNDS} rounds"
for round in $(seq "$ROUNDS"); do
  echo "   round $round of $ROUNDS"
  run_wrk "http://127.0.0.1:$NGINX_PORT/os/info" "${NGINX_PIDS[@]}" >>"$WORK/nginx-close.runs"
  run_wrk "http://127.0.0.1:$GATEWAY_PORT/os/info" "$GATEWAY_PID" >>"$WORK/gateway-close.runs"
  run_wrk "http://127.0.0.1:$REUSE_PORT/os/info" "$REUSE_PID" >>"$WORK/reuse-close.runs"
done
# bashio's GET, as shell add-ons call the API: curl, a new connection for
# each call, `Authorization: Bearer`, a JSON content type and the body `{}`
# (supervisor-api.md).
cat >"$WORK/bashio.lua" <<'LUA'
wrk.method = "GET"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
LUA
WRK_TOKEN=(-H "Authorization: Bearer $TOKEN")
WRK_HEADERS=(-H "Connection: close" -s "$WORK/bashio.lua")
echo "== bashio's GET /os/info (a {} body, Authorization: Bearer), a new connection for each request: ${THREADS} threads, ${CONNECTIONS} at once, ${DURATION} s each, ${ROUNDS} rounds"
for round in $(seq "$ROUNDS"); do
  echo "   round $round of $ROUNDS"
  run_wrk "http://127.0.0.1:$NGINX_PORT/os/info" "${NGINX_PIDS[@]}" >>"$WORK/nginx-bashio.runs"
  run_wrk "http://127.0.0.1:$GATEWAY_PORT/os/info" "$GATEWAY_PID" >>"$WORK/gateway-bashio.runs"
done
median() { # FILE: "rps p50 p99 cpu upstream-cpu (rps of each round) (busiest of each round)",
  # each the median of its column
  python3 - "$1" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
columns = list(zip(*rows))
rps, p50, p99, cpu, up = (statistics.median(float(v) for v in c) for c in columns[:5])
cpu, up = ("-" if v != v else f"{v:.1f}" for v in (cpu, up))
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {cpu} {up} {'/'.join(r[0] for r in rows)} {'/'.join(r[5] for r in rows)}%")
PY
}
read -r D_RPS D_P50 D_P99 D_CPU D_UP D_RUNS D_BUSY < <(median "$WORK/direct.runs")
read -r N_RPS N_P50 N_P99 N_CPU N_UP N_RUNS N_BUSY < <(median "$WORK/nginx.runs")
read -r G_RPS G_P50 G_P99 G_CPU G_UP G_RUNS G_BUSY < <(median "$WORK/gateway.runs")
read -r F_RPS F_P50 F_P99 F_CPU F_UP F_RUNS F_BUSY < <(median "$WORK/nginx-fwd.runs")
read -r L_RPS L_P50 L_P99 L_CPU L_UP L_RUNS L_BUSY < <(median "$WORK/floor.runs")
read -r NC_RPS NC_P50 NC_P99 NC_CPU NC_UP NC_RUNS NC_BUSY < <(median "$WORK/nginx-close.runs")
read -r GC_RPS GC_P50 GC_P99 GC_CPU GC_UP GC_RUNS GC_BUSY < <(median "$WORK/gateway-close.runs")
read -r RC_RPS RC_P50 RC_P99 RC_CPU RC_UP RC_RUNS RC_BUSY < <(median "$WORK/reuse-close.runs")
read -r NB_RPS NB_P50 NB_P99 NB_CPU NB_UP NB_RUNS NB_BUSY < <(median "$WORK/nginx-bashio.runs")
read -r GB_RPS GB_P50 GB_P99 GB_CPU GB_UP GB_RUNS GB_BUSY < <(median "$WORK/gateway-bashio.runs")
share() { python3 -c "print(f'{100 * $1 / $2:.0f}%')"; }
paired() { # GATEWAY-RUNS NGINX-RUNS: the gateway against nginx round by round
  # (each pair ran back to back, so the machine's drift between rounds
  # cancels), and in how many rounds both targets held
  python3 - "$1" "$2" <<'PY'
import sys
def rows(name):
    return [line.split() for line in open(name) if line.strip()]
pairs = list(zip(rows(sys.argv[1]), rows(sys.argv[2])))
rate = [100 * float(g[0]) / float(n[0]) for g, n in pairs]
p99 = [100 * (float(g[2]) / float(n[2]) - 1) for g, n in pairs]
# Judged on the figures unrounded: a round shown as 100% or +0% may not count.
met = sum(1 for r, p in zip(rate, p99) if r >= 100 and p <= 0)
print(f"rate {'/'.join(f'{r:.0f}' for r in rate)}% of nginx's, p99 "
      f"{'/'.join(f'{p:+.0f}' for p in p99)}% against nginx's; both targets held in "
      f"{met} of {len(pairs)} rounds")
PY
}

# ---- idle keep-alive connections -------------------------------------------------
echo "== ${IDLE} idle keep-alive connections to the gateway"
IDLE_BEFORE=$(rss_kib)
python3 - "$GATEWAY_PORT" "$IDLE" "$TOKEN" "$GATEWAY_PID" >"$WORK/idle.out" <<'PY'
import socket, sys, time
port, count, token, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = f"GET /supervisor/ping HTTP/1.1\r\nHost: bench\r\nX-Supervisor-Token: {token}\r\n\r\n".encode()
sockets = []
deadline = time.time() + 120
for _ in range(count):
    if time.time() > deadline:
        break
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(request)
    s.recv(65536)
    sockets.append(s)
# Past the second after which an idle connection gives up its buffers.
time.sleep(2)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
print(len(sockets), rss)
for s in sockets:
    s.close()
PY
read -r OPENED IDLE_RSS_MANY <"$WORK/idle.out"

mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
# (Made here, not inside the report below, so that a failure ends the run.)
PAIRED=$(paired "$WORK/gateway.runs" "$WORK/nginx.runs")
PAIRED_CLOSE=$(paired "$WORK/gateway-close.runs" "$WORK/nginx-close.runs")
PAIRED_REUSE=$(paired "$WORK/reuse-close.runs" "$WORK/nginx-close.runs")
PAIRED_BASHIO=$(paired "$WORK/gateway-bashio.runs" "$WORK/nginx-bashio.runs")
cat <<EOF

| small GET /os/info (median of $ROUNDS rounds) | requests/s | p50 (ms) | p99 (ms) | CPU µs per request | upstream's CPU µs per request | requests/s in each round | busiest thread's share of the CPU, each round |
| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |
| upstream directly | $D_RPS | $D_P50 | $D_P99 | $D_CPU (upstream) | $D_UP | $D_RUNS | $D_BUSY |
| nginx in front | $N_RPS | $N_P50 | $N_P99 | $N_CPU (nginx) | $N_UP | $N_RUNS | $N_BUSY |
| supervisor-gateway in front | $G_RPS | $G_P50 | $G_P99 | $G_CPU (gateway) | $G_UP | $G_RUNS | $G_BUSY |
| nginx in front, sending the three X-Forwarded-* too | $F_RPS | $F_P50 | $F_P99 | $F_CPU (nginx) | $F_UP | $F_RUNS | $F_BUSY |
| floor: a minimal tokio proxy sending them too (examples/floor_proxy.rs; no decision, limits or timeouts) | $L_RPS | $L_P50 | $L_P99 | $L_CPU (floor) | $L_UP | $L_RUNS | $L_BUSY |

The gateway's rate: $(share "$G_RPS" "$N_RPS") of plain nginx's (the target: at least 100%, p99 no worse), $(share "$G_RPS" "$F_RPS") of nginx's sending the same forwarded headers, $(share "$G_RPS" "$L_RPS") of the floor's. The floor's: $(share "$L_RPS" "$N_RPS") of plain nginx's.

Round by round, the gateway against the plain nginx run just before it: $PAIRED.

| small GET /os/info, a new connection for each request (median of $ROUNDS rounds) | requests/s | p50 (ms) | p99 (ms) | CPU µs per request | upstream's CPU µs per request | requests/s in each round | busiest thread's share of the CPU, each round |
| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |
| nginx in front | $NC_RPS | $NC_P50 | $NC_P99 | $NC_CPU (nginx) | $NC_UP | $NC_RUNS | $NC_BUSY |
| supervisor-gateway in front | $GC_RPS | $GC_P50 | $GC_P99 | $GC_CPU (gateway) | $GC_UP | $GC_RUNS | $GC_BUSY |
| supervisor-gateway in front, reuse_port: true | $RC_RPS | $RC_P50 | $RC_P99 | $RC_CPU (gateway) | $RC_UP | $RC_RUNS | $RC_BUSY |

With a new connection for each request, round by round: $PAIRED_CLOSE; with reuse_port: $PAIRED_REUSE.

| bashio's GET /os/info: a {} body, Authorization: Bearer, a new connection for each request (median of $ROUNDS rounds) | requests/s | p50 (ms) | p99 (ms) | CPU µs per request | upstream's CPU µs per request | requests/s in each round | busiest thread's share of the CPU, each round |
| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |
| nginx in front | $NB_RPS | $NB_P50 | $NB_P99 | $NB_CPU (nginx) | $NB_UP | $NB_RUNS | $NB_BUSY |
| supervisor-gateway in front | $GB_RPS | $GB_P50 | $GB_P99 | $GB_CPU (gateway) | $GB_UP | $GB_RUNS | $GB_BUSY |

bashio's GET, round by round: $PAIRED_BASHIO.

| ${SIZE_MIB} MiB transfer (median of $ROUNDS rounds; through the gateway, its share of direct in each round) | upload from a file MiB/s | upload streamed (chunked) MiB/s | download MiB/s |
| --- | ---: | ---: | ---: |
| upstream directly | $DIRECT_UP | $DIRECT_STREAM | $DIRECT_DOWN |
| through the gateway | $GW_UP | $GW_STREAM | $GW_DOWN |

| gateway memory | MiB |
| --- | ---: |
| idle (RSS) | $(mib "$IDLE_RSS") |
| peak during the transfers (VmHWM) | $(mib "$PEAK_RSS") |
| before the idle connections (RSS) | $(mib "$IDLE_BEFORE") |
| with $OPENED idle keep-alive connections (RSS) | $(mib "$IDLE_RSS_MANY") |
EOF
