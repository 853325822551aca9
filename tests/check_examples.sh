#!/bin/sh
# check_examples.sh - every standalone example config, and the installed
# conf/ahoyd.yaml, passes `ahoyd --check-config` (SPEC 2.5); its
# `--dump-config` output loads again too. An example has no warning.
#
# Standalone examples are conf/examples/*.yaml, plus, for a multi-file example
# in a subdirectory, the file named after that directory
# (conf/examples/profiles/profiles.yaml); overlays and drop-ins beside it are
# only checked through it. Needs AHOYD_BIN and TOP_SRCDIR (set by make check).
# Prints one line per file and "N passed, N failed"; exits 1 on any failure.

if [ -z "$AHOYD_BIN" ] || [ ! -x "$AHOYD_BIN" ]; then
    echo "check_examples: AHOYD_BIN is not set to an executable ahoyd" >&2
    exit 99
fi
: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
bin=$AHOYD_BIN

# Hermetic: no AHOYD_* / PYFLY_* overrides from the caller's environment.
for v in $(env | sed -n 's/^\(\(AHOYD\|PYFLY\)_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$v"
done

set --
for f in "$TOP_SRCDIR"/conf/examples/*.yaml; do
    [ -f "$f" ] && set -- "$@" "$f"
done
for d in "$TOP_SRCDIR"/conf/examples/*/; do
    [ -d "$d" ] || continue
    main="$d$(basename "$d").yaml"
    [ -f "$main" ] && set -- "$@" "$main"
done
if [ -f "$TOP_SRCDIR/conf/ahoyd.yaml" ]; then
    set -- "$@" "$TOP_SRCDIR/conf/ahoyd.yaml"
else
    echo "SKIP: conf/ahoyd.yaml (missing)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ahoyd-examples.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

passed=0
failed=0
for f in "$@"; do
    name=${f#"$TOP_SRCDIR"/}
    why=""
    out=$("$bin" --check-config -c "$f" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || ! printf '%s\n' "$out" | grep -q '^configuration OK$'; then
        why="--check-config exited $rc"
    elif printf '%s\n' "$out" | grep -q 'warning'; then
        why="--check-config warns (an example shows a configuration that makes sense)"
    elif ! "$bin" --dump-config -c "$f" >"$tmp/dump.yaml" 2>"$tmp/dump.err"; then
        why="--dump-config failed"
        out=$(cat "$tmp/dump.err")
    else
        out=$("$bin" --check-config -c "$tmp/dump.yaml" 2>&1)
        rc=$?
        [ $rc -eq 0 ] || why="its --dump-config output does not load (exit $rc)"
    fi
    if [ -z "$why" ]; then
        echo "PASS: $name"
        passed=$((passed + 1))
    else
        echo "FAIL: $name: $why"
        printf '%s\n' "$out" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done

# The README shows conf/ahoyd.yaml verbatim: the block after its "```yaml" line that
# follows the sentence naming the file as it is in the repository.
readme=$TOP_SRCDIR/README.md
if [ -f "$readme" ] && [ -f "$TOP_SRCDIR/conf/ahoyd.yaml" ]; then
    awk '/conf\/ahoyd.yaml. as it is in the repository/ { want = 1 }
         want && inside && /^```$/ { exit }
         inside { print }
         want && /^```yaml$/ { inside = 1 }' "$readme" >"$tmp/readme.yaml"
    if cmp -s "$tmp/readme.yaml" "$TOP_SRCDIR/conf/ahoyd.yaml"; then
        echo "PASS: README.md shows conf/ahoyd.yaml as it is"
        passed=$((passed + 1))
    else
        echo "FAIL: README.md: its conf/ahoyd.yaml block is not the file"
        diff "$TOP_SRCDIR/conf/ahoyd.yaml" "$tmp/readme.yaml" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
