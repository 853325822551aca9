#!/bin/sh
# check_install.sh - `make install` and `make uninstall` into a DESTDIR (SPEC 8).
#
# install puts ahoyd in $(sbindir), the default configuration in
# $(sysconfdir)/ahoyd/ (never overwriting a local one), the systemd unit and
# the man pages in place; uninstall removes what install put there but leaves
# the configuration. The installed unit passes `systemd-analyze verify` and
# scores at most 2.0 with `systemd-analyze security --offline=true` (both
# skipped when systemd-analyze is missing).
#
# Runs from make check in the top build directory: TOP_BUILDDIR (or the
# directory of AHOYD_BIN, or the current directory) is the build tree whose
# Makefile is used; TOP_SRCDIR the source tree (default: beside this script).
# Prints one line per check; exits 1 on any failure, 99 on a set-up error.

: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
if [ -z "${TOP_BUILDDIR:-}" ]; then
    if [ -n "${AHOYD_BIN:-}" ]; then
        TOP_BUILDDIR=$(dirname "$AHOYD_BIN")
    else
        TOP_BUILDDIR=$(pwd)
    fi
fi
if [ ! -f "$TOP_BUILDDIR/Makefile" ]; then
    echo "check_install: no Makefile in $TOP_BUILDDIR (set TOP_BUILDDIR)" >&2
    exit 99
fi
MAKE_CMD=${MAKE:-make}
# The nested make runs on its own, not as part of the caller's job server;
# ahoyd reads AHOYD_* variables as configuration overrides.
unset MAKEFLAGS MFLAGS MAKELEVEL AHOYD_BIN

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ahoyd-install.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
failed=0

ok() { echo "PASS: $*"; }
bad() {
    echo "FAIL: $*"
    failed=1
}
check() {
    # check DESCRIPTION COMMAND...
    what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# The installation directories, as the Makefile expands them (make variables,
# not shell ones, hence the single quotes).
# shellcheck disable=SC2016
vars='$(sbindir)|$(sysconfdir)|$(systemdsystemunitdir)|$(man8dir)|$(man5dir)'
dirs=$(printf 'check-install-print-dirs:\n\t@echo "%s"\n' "$vars" |
    "$MAKE_CMD" -s --no-print-directory -C "$TOP_BUILDDIR" -f Makefile -f - \
        check-install-print-dirs) || exit 99
IFS='|' read -r sbindir sysconfdir unitdir man8dir man5dir <<EOF
$dirs
EOF
for d in "$sbindir" "$sysconfdir" "$unitdir" "$man8dir" "$man5dir"; do
    case $d in
    /*) ;;
    *)
        echo "check_install: cannot read the install directories (got '$dirs')" >&2
        exit 99
        ;;
    esac
done
bin=$root$sbindir/ahoyd
conf=$root$sysconfdir/ahoyd/ahoyd.yaml
unit=$root$unitdir/ahoyd.service
man8=$root$man8dir/ahoyd.8
man5=$root$man5dir/ahoyd.yaml.5

do_make() {
    # do_make TARGET: make TARGET DESTDIR=$root, output to $tmp/TARGET.log
    if ! "$MAKE_CMD" --no-print-directory -C "$TOP_BUILDDIR" "$1" DESTDIR="$root" \
        >"$tmp/$1.log" 2>&1; then
        bad "make $1"
        cat "$tmp/$1.log"
        return 1
    fi
    ok "make $1"
}

# ---- first install -----------------------------------------------------------------
do_make install || exit 1
check "ahoyd installed in $sbindir" test -x "$bin"
version=$("$bin" -V 2>/dev/null)
case $version in
"ahoyd "[0-9]*.[0-9]*.[0-9]*) ok "installed ahoyd -V: $version" ;;
*) bad "installed ahoyd -V printed '$version'" ;;
esac
check "configuration installed in $sysconfdir/ahoyd" cmp -s "$TOP_SRCDIR/conf/ahoyd.yaml" "$conf"
check "the installed configuration is valid" "$bin" --check-config -c "$conf" >/dev/null
check "unit installed in $unitdir" test -f "$unit"
check "unit starts $sbindir/ahoyd with $sysconfdir/ahoyd/ahoyd.yaml" \
    grep -qx "ExecStart=$sbindir/ahoyd -c $sysconfdir/ahoyd/ahoyd.yaml" "$unit"
check "unit has no unsubstituted @...@" sh -c "! grep -q '@[a-z]*@' '$unit'"
check "man page ahoyd.8 installed" cmp -s "$TOP_SRCDIR/man/ahoyd.8" "$man8"
check "man page ahoyd.yaml.5 installed" cmp -s "$TOP_SRCDIR/man/ahoyd.yaml.5" "$man5"

# ---- a second install keeps a modified configuration ----------------------------------
echo "# local change by check_install" >>"$conf"
cp "$conf" "$tmp/modified.yaml"
do_make install || exit 1
check "second install keeps the modified configuration" cmp -s "$tmp/modified.yaml" "$conf"
check "second install says it kept it" grep -q "keeping existing" "$tmp/install.log"

# ---- systemd-analyze ------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
    # The unit names the final paths; point a copy at the DESTDIR binary and
    # configuration so that verify can check the command exists.
    mkdir -p "$tmp/unit"
    sed -e "s,$sbindir/ahoyd,$bin,g" -e "s,$sysconfdir/ahoyd/,$root$sysconfdir/ahoyd/,g" \
        "$unit" >"$tmp/unit/ahoyd.service"
    # Documentation=man:... is checked against the installed pages when man exists.
    man_opt=--man=yes
    command -v man >/dev/null 2>&1 || man_opt=--man=no
    if MANPATH="$root${man8dir%/man8}:" systemd-analyze verify --recursive-errors=no "$man_opt" \
        "$tmp/unit/ahoyd.service" >"$tmp/verify.log" 2>&1 &&
        ! grep -q . "$tmp/verify.log"; then
        ok "systemd-analyze verify"
    else
        bad "systemd-analyze verify"
        cat "$tmp/verify.log"
    fi
    systemd-analyze security --offline=true --no-pager "$tmp/unit/ahoyd.service" \
        >"$tmp/security.log" 2>&1
    score=$(sed -n 's/.*Overall exposure level for ahoyd.service: \([0-9.]*\).*/\1/p' \
        "$tmp/security.log")
    if [ -z "$score" ]; then
        bad "systemd-analyze security: no score"
        tail -20 "$tmp/security.log"
    elif awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
        ok "systemd-analyze security score $score <= 2.0"
    else
        bad "systemd-analyze security score $score > 2.0"
        grep '✗' "$tmp/security.log" | head -30
    fi
else
    echo "SKIP: systemd-analyze verify / security (systemd-analyze not found)"
fi

# ---- uninstall ----------------------------------------------------------------------------
do_make uninstall || exit 1
check "uninstall removes the binary" test ! -e "$bin"
check "uninstall removes the unit" test ! -e "$unit"
check "uninstall removes the man pages" test ! -e "$man8" -a ! -e "$man5"
check "uninstall leaves the configuration" cmp -s "$tmp/modified.yaml" "$conf"
left=$(cd "$root" && find . -type f | grep -v "^.$sysconfdir/ahoyd/ahoyd.yaml\$")
check "uninstall leaves no other file${left:+ (left: $left)}" test -z "$left"

if [ "$failed" -ne 0 ]; then
    echo "check_install: FAILED"
    exit 1
fi
echo "check_install: all passed"
exit 0
