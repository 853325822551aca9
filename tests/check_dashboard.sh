#!/bin/sh
# check_dashboard.sh - the admin listener's dashboard (GET /) in a real browser.
#
# Starts two stub upstreams and ahoyd with two services (orders over both stubs,
# billing over one stub and a closed port) and an admin token, then runs
# tests/dashboard.mjs in Node: it makes the second orders endpoint answer 503
# until its breaker opens, keeps traffic going, opens the page in headless
# Chromium (driven with the npm package playwright-core), gives it the token it
# asks for, checks that the open breaker shows as open and the rates are not
# zero, presses reset, sees the breaker close (and checks /v1/services), and
# saves screenshots in tests/ of the build tree (dashboard*.png).
#
# Needs node, /usr/bin/chromium (or $CHROMIUM) and playwright-core, looked for in
# $DASHBOARD_NODE_MODULES, then tests/node_modules of the source tree, then
# $CI_NODE_DIR/node_modules (where .ci/deps puts it), then
# /var/cache/ahoyd-ci/node/node_modules. Without them it skips (exit 77), or
# fails when CI=true. Exit 0 pass, 1 fail, 99 set-up error.

: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${TOP_BUILDDIR:=$(pwd)}"
: "${AHOYD_BIN:=$TOP_BUILDDIR/ahoyd}"
: "${STUB_BIN:=$TOP_BUILDDIR/tests/stub_upstream}"
: "${CHROMIUM:=/usr/bin/chromium}"
# ahoyd reads AHOYD_* variables as configuration overrides: none of the test's reach it
ahoyd_bin=$AHOYD_BIN
unset AHOYD_BIN AHOYD_WORKERS

missing() {
    if [ "${CI:-}" = true ]; then
        echo "check_dashboard: FAIL: $* (CI=true: the browser test must run; see README)" >&2
        exit 1
    fi
    echo "check_dashboard: SKIP: $*" >&2
    exit 77
}
command -v node >/dev/null 2>&1 || missing "node not found (apt-get install nodejs)"
[ -x "$CHROMIUM" ] || missing "$CHROMIUM not found (apt-get install chromium)"
modules=
for d in ${DASHBOARD_NODE_MODULES:-} "$TOP_SRCDIR/tests/node_modules" \
    "${CI_NODE_DIR:-/var/cache/ahoyd-ci/node}/node_modules" \
    /var/cache/ahoyd-ci/node/node_modules; do
    if [ -f "$d/playwright-core/package.json" ]; then
        modules=$d
        break
    fi
done
npm_cmd="npm install --prefix /var/cache/ahoyd-ci/node playwright-core"
[ -n "$modules" ] || missing "playwright-core not found ($npm_cmd)"
if [ ! -x "$ahoyd_bin" ] || [ ! -x "$STUB_BIN" ]; then
    echo "check_dashboard: $ahoyd_bin or $STUB_BIN missing" >&2
    exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ahoyd-dashboard.XXXXXX") || exit 99
pids=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 99' INT TERM

# wait_for FILE REGEX: print the first match's last field (bounded: 10 s)
wait_for() {
    i=0
    while [ $i -lt 200 ]; do
        v=$(sed -n "s/.*$2 \\([^ ]*\\)\$/\\1/p" "$1" 2>/dev/null | head -n 1)
        if [ -n "$v" ]; then
            echo "$v"
            return 0
        fi
        i=$((i + 1))
        sleep 0.05
    done
    echo "check_dashboard: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}
start_stub() { # start_stub NAME: starts it (in this shell, so cleanup knows its pid)
    # and sets stub_addr to its host:port
    "$STUB_BIN" --listen 127.0.0.1:0 --name "$1" >"$tmp/$1.out" 2>&1 &
    pids="$pids $!"
    stub_addr=$(wait_for "$tmp/$1.out" "stub listening on")
}
start_stub a || exit 99
stub_a=$stub_addr
start_stub b || exit 99
stub_b=$stub_addr
# a port that refuses connections: a stub's, once it is gone
"$STUB_BIN" --listen 127.0.0.1:0 --name gone >"$tmp/gone.out" 2>&1 &
gone_pid=$!
gone=$(wait_for "$tmp/gone.out" "stub listening on") || exit 99
kill "$gone_pid" && wait "$gone_pid" 2>/dev/null

token=dashboard-test-token
cat >"$tmp/ahoyd.yaml" <<EOF
ahoyd:
  listen: 127.0.0.1:0
  admin-listen: 127.0.0.1:0
  admin-token: $token
  access-log: "off"
pyfly:
  client:
    default:
      timeout: 2s
      connect-timeout: 500ms
    circuit-breaker:
      failure-threshold: 3
      recovery-timeout: 10m
    retry:
      max-attempts: 2
      base-delay: 10ms
      max-delay: 20ms
    services:
      orders:
        endpoints: [http://$stub_a, http://$stub_b]
      billing:
        endpoints: [http://$stub_a, http://$gone]
EOF
"$ahoyd_bin" -c "$tmp/ahoyd.yaml" >"$tmp/ahoyd.log" 2>&1 &
ahoyd_pid=$!
pids="$pids $ahoyd_pid"
proxy=$(wait_for "$tmp/ahoyd.log" "proxy listening on") || exit 99
admin=$(wait_for "$tmp/ahoyd.log" "admin listening on") || exit 99

shots=$TOP_BUILDDIR/tests
mkdir -p "$shots"
t0=$(date +%s)
DASHBOARD_NODE_MODULES=$modules CHROMIUM=$CHROMIUM node "$TOP_SRCDIR/tests/dashboard.mjs" \
    "http://$proxy" "http://$admin" "http://$stub_b" "$token" "$shots" "$tmp/profile"
rc=$?
echo "check_dashboard: browser part took $(($(date +%s) - t0)) s"
if ! kill -0 "$ahoyd_pid" 2>/dev/null; then
    echo "check_dashboard: FAIL: ahoyd exited during the test" >&2
    rc=1
fi
if [ $rc -ne 0 ]; then
    echo "--- ahoyd log" >&2
    tail -n 50 "$tmp/ahoyd.log" >&2
    exit 1
fi
echo "check_dashboard: PASS (screenshots in $shots)"
exit 0
