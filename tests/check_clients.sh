#!/bin/sh
# check_clients.sh - real HTTP clients with their default settings get the
# upstream's answers through ahoyd.
#
# Java's java.net.http.HttpClient (tests/clients/Client.java, run by the
# single-file launcher) and `curl --http2` both send `Connection: Upgrade,
# HTTP2-Settings` and `Upgrade: h2c` on plain http:// URLs. ahoyd ignores that
# upgrade: each request must come back 200 with the stub's JSON, over
# HTTP/1.1, and the upstream must see neither Upgrade nor HTTP2-Settings.
#
# WebSocket clients go through tunnels to the stub's WebSocket endpoints where they
# exist: Node.js's built-in WebSocket (Node.js >= 22, or >= 20.10 behind a flag) and
# curl's ws:// (curl >= 8.11, Debian 13); each is skipped, saying so, elsewhere.
#
# Needs AHOYD_BIN and STUB_BIN (set by make check), curl, and java (package
# default-jdk-headless). Without java the test fails when CI=true and is
# skipped (exit 77) otherwise. Prints one line per check; exits 1 on any
# failure, 99 on a set-up error.

: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
bin=${AHOYD_BIN:-}
stub_bin=${STUB_BIN:-}
if [ -z "$bin" ] || [ ! -x "$bin" ] || [ -z "$stub_bin" ] || [ ! -x "$stub_bin" ]; then
    echo "check_clients: AHOYD_BIN and STUB_BIN must name the built ahoyd and stub" >&2
    exit 99
fi
# Hermetic: ahoyd reads AHOYD_* / PYFLY_* variables as configuration overrides.
for v in $(env | sed -n 's/^\(\(AHOYD\|PYFLY\)_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$v"
done

if ! command -v java >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: java is not installed (install default-jdk-headless; .ci/deps does)"
        exit 1
    fi
    echo "SKIP: java is not installed (package default-jdk-headless)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ahoyd-clients.XXXXXX") || exit 99
stub_pid=
ahoyd_pid=
cleanup() {
    [ -n "$ahoyd_pid" ] && kill "$ahoyd_pid" 2>/dev/null
    [ -n "$stub_pid" ] && kill "$stub_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
failed=0

ok() { echo "PASS: $*"; }
bad() {
    echo "FAIL: $*"
    failed=1
}

# wait_port FILE PATTERN: the port after PATTERN in FILE, polled for up to 10 s.
wait_port() {
    i=0
    while [ $i -lt 200 ]; do
        port=$(sed -n "s/.*$2\\(.*:\\)\\([0-9][0-9]*\\)\$/\\2/p" "$1" 2>/dev/null | head -n 1)
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

"$stub_bin" --listen 127.0.0.1:0 --name a >"$tmp/stub.log" 2>&1 &
stub_pid=$!
stub_port=$(wait_port "$tmp/stub.log" "stub listening on ") || {
    echo "check_clients: the stub did not start" >&2
    cat "$tmp/stub.log" >&2
    exit 99
}
cat >"$tmp/ahoyd.yaml" <<EOF
ahoyd:
  listen: 127.0.0.1:0
  admin-listen: off
  access-log: stderr
pyfly:
  client:
    services:
      svc:
        base-url: http://127.0.0.1:$stub_port/base
EOF
"$bin" -c "$tmp/ahoyd.yaml" >"$tmp/ahoyd.log" 2>&1 &
ahoyd_pid=$!
port=$(wait_port "$tmp/ahoyd.log" "proxy listening on ") || {
    echo "check_clients: ahoyd did not start" >&2
    cat "$tmp/ahoyd.log" >&2
    exit 99
}
url=http://127.0.0.1:$port/svc/hello?from=client

# check_answer WHAT LINE METHOD: LINE is "<status> <protocol> <stub JSON>".
check_answer() {
    case $2 in
    "200 "*) ;;
    *)
        bad "$1: want 200, got: $(printf '%.300s' "$2")"
        return
        ;;
    esac
    for want in '"upstream":"a"' "\"method\":\"$3\"" '"target":"/base/hello?from=client"' \
        '"Via":"1.1 ahoyd"'; do
        case $2 in
        *"$want"*) ;;
        *)
            bad "$1: the answer lacks $want: $(printf '%.300s' "$2")"
            return
            ;;
        esac
    done
    case $2 in
    *'"Upgrade"'* | *'"HTTP2-Settings"'* | *'"Connection"'*)
        bad "$1: the upstream saw the upgrade: $(printf '%.300s' "$2")"
        return
        ;;
    esac
    ok "$1"
}

# ---- Java's default HttpClient: three GETs and a POST on one client ---------------------
# A quick JVM start: no tiered compilation past C1, the serial collector.
java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "$TOP_SRCDIR/tests/clients/Client.java" \
    "$url" 3 >"$tmp/java.out" 2>"$tmp/java.err"
rc=$?
if [ $rc -ne 0 ] || [ "$(wc -l <"$tmp/java.out")" -ne 4 ]; then
    bad "java HttpClient exited $rc with $(wc -l <"$tmp/java.out") answers"
    cat "$tmp/java.out" "$tmp/java.err"
else
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        method=GET
        [ $n -eq 4 ] && method=POST
        check_answer "java HttpClient request $n ($method)" "$line" "$method"
        case $line in
        "200 HTTP_1_1 "*) ;;
        *) bad "java HttpClient request $n: not answered over HTTP/1.1" ;;
        esac
    done <"$tmp/java.out"
fi

# ---- curl --http2 (an h2c upgrade, not prior knowledge) -----------------------------------
if curl --version | grep -qi 'features:.*http2'; then
    line=$(curl -sS --http2 -m 10 -o "$tmp/curl.body" -D "$tmp/curl.head" \
        -w '%{http_code} %{http_version}' "$url" 2>&1)
    check_answer "curl --http2 GET" "$line $(cat "$tmp/curl.body")" GET
    case $line in
    "200 1.1") ok "curl --http2: answered over HTTP/1.1" ;;
    *) bad "curl --http2: got '$line'" ;;
    esac
    line=$(curl -sS --http2 -m 10 -d '{"x":1}' -H 'Content-Type: application/json' \
        -o "$tmp/curl.body" -w '%{http_code} %{http_version}' "$url" 2>&1)
    check_answer "curl --http2 POST" "$line $(cat "$tmp/curl.body")" POST
elif [ "${CI:-}" = true ]; then
    bad "curl has no HTTP/2 support here, so it sends no h2c upgrade"
else
    echo "SKIP: curl --http2 (this curl has no HTTP/2 support)"
fi

# ---- a real WebSocket client: Node's built-in WebSocket -----------------------------------
# Node >= 22 has it; Node 20.10 and 21 behind --experimental-websocket; Debian 12's Node 18
# has none, and the check is skipped there. Through ahoyd to the stub's echo endpoint: a
# text message and a 100 KiB binary one come back, then a clean close.
ws_flag=
has_ws='process.exit(typeof WebSocket === "function" ? 0 : 1)'
if command -v node >/dev/null 2>&1 && node -e "$has_ws" 2>/dev/null; then
    ws_node=yes
elif command -v node >/dev/null 2>&1 && node --experimental-websocket -e "$has_ws" 2>/dev/null; then
    ws_node=yes
    ws_flag=--experimental-websocket
else
    ws_node=
fi
if [ -n "$ws_node" ]; then
    line=$(node $ws_flag --no-warnings -e '
const ws = new WebSocket(process.argv[1]);
ws.binaryType = "arraybuffer";
const big = new Uint8Array(100 * 1024).map((_, i) => (i * 7) & 255);
let step = 0;
const fail = (m) => { console.log("FAIL " + m); process.exit(1); };
setTimeout(() => fail("timeout at step " + step), 10000);
ws.onopen = () => ws.send("hello websocket");
ws.onerror = (e) => fail("error " + (e.message || e.type));
ws.onmessage = (m) => {
    if (step === 0) {
        if (m.data !== "hello websocket") fail("text echo " + m.data);
        step = 1;
        ws.send(big);
    } else {
        const got = new Uint8Array(m.data);
        if (got.length !== big.length || got.some((b, i) => b !== big[i])) fail("binary echo");
        step = 2;
        ws.close(1000, "done");
    }
};
ws.onclose = (e) => {
    if (step !== 2) fail("closed early " + e.code);
    console.log("ok");
    process.exit(0);
};
' "ws://127.0.0.1:$port/svc/ws-echo" 2>&1)
    case $line in
    "ok"*) ok "node WebSocket: text and binary echoed through a tunnel, closed cleanly" ;;
    *) bad "node WebSocket: $(printf '%.300s' "$line")" ;;
    esac
else
    echo "SKIP: node WebSocket (no built-in WebSocket in this Node.js, or no Node.js:" \
        "it needs Node.js >= 22, or >= 20.10 with --experimental-websocket)"
fi

# ---- curl's ws:// (curl 8.11 and later build WebSockets in; 7.88 does not) ---------------
# curl writes the payload of every frame it receives: the stub's first frame, sent with
# its 101, must come through the tunnel.
if curl --version | grep -q '^Protocols:.* ws'; then
    out=$(curl -sS -m 3 --no-buffer "ws://127.0.0.1:$port/svc/ws-hello" 2>/dev/null)
    case $out in
    welcome*) ok "curl ws://: the upstream's first frame came through a tunnel" ;;
    *) bad "curl ws://: got '$(printf '%.200s' "$out")'" ;;
    esac
else
    echo "SKIP: curl ws:// (this curl has no WebSocket support; curl 8.11 and later have it)"
fi

# ---- ahoyd stops cleanly ------------------------------------------------------------------
kill "$ahoyd_pid"
wait "$ahoyd_pid"
rc=$?
ahoyd_pid=
if [ $rc -eq 0 ]; then ok "ahoyd exits 0 on SIGTERM"; else bad "ahoyd exited $rc"; fi
if [ $failed -ne 0 ]; then
    echo "--- ahoyd log"
    cat "$tmp/ahoyd.log"
fi
exit $failed
