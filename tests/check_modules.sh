#!/bin/sh
# check_modules.sh - the modules of src/ call each other in one direction only.
#
# Reads the symbols each object of libahoyd.a defines and uses (nm) and draws
# an edge A -> B when module A uses a symbol that module B defines. One module
# is one src/*.c file, except the groups below (config*.c = config). Any cycle
# fails the check and is printed with the symbols on each edge, e.g.
#   cycle: proxy -> server -> proxy (proxy -> server: server_respond; server -> proxy: ...)
# unless tests/module-cycles.allow lists exactly that set of modules (a known
# cycle, each with a comment saying when it goes). A cycle that grows to take
# in another module no longer matches its entry and fails too.
# On success it prints the module order from the bottom up (each module after
# everything it uses; a listed cycle is printed as {a b}).
#
# usage: tests/check_modules.sh [LIBRARY [ALLOW-FILE]]
#   defaults: $TOP_BUILDDIR/libahoyd.a and $TOP_SRCDIR/tests/module-cycles.allow
set -u

srcdir=${TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
lib=${1:-${TOP_BUILDDIR:-.}/libahoyd.a}
allow=${2:-$srcdir/tests/module-cycles.allow}
NM=${NM:-nm}

if [ ! -f "$lib" ]; then
    echo "check_modules: $lib not found (set TOP_BUILDDIR or pass the library)" >&2
    exit 1
fi
[ -f "$allow" ] || allow=/dev/null

# "module kind symbol" for every global symbol of every object: D(efined) or U(sed)
syms=$("$NM" -A "$lib" 2>/dev/null | awk '
{
    # libahoyd.a:libahoyd_a-proxy.o:0000000000000000 T proxy_begin
    # libahoyd.a:libahoyd_a-proxy.o:                 U server_respond
    split($1, part, ":")
    obj = part[2]
    sub(/^.*\//, "", obj)
    sub(/^libahoyd_a-/, "", obj)
    sub(/\.o$/, "", obj)
    mod = obj
    if (mod ~ /^config/) mod = "config"   # config*.c: one module
    if (NF == 2) { type = $1; sym = $2 } else { type = $2; sym = $3 }
    if (type == "U") print mod, "U", sym
    else if (type ~ /^[TDBRCGSVW]$/) print mod, "D", sym
}') || exit 1
if [ -z "$syms" ]; then
    echo "check_modules: no symbols read from $lib" >&2
    exit 1
fi

printf '%s\n' "$syms" | awk -v allowfile="$allow" '
function sortwords(s,    a, n, i, j, t, out) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    out = ""
    for (i = 1; i <= n; i++) out = out (i > 1 ? " " : "") a[i]
    return out
}
# Tarjan: strongly connected components, numbered in the order they complete,
# which is bottom-up (a component completes after everything it reaches).
function strong(v,    i, w) {
    index_of[v] = lowlink[v] = ++counter
    stack[++sp] = v
    on_stack[v] = 1
    for (i = 1; i <= nout[v]; i++) {
        w = out[v, i]
        if (!(w in index_of)) {
            strong(w)
            if (lowlink[w] < lowlink[v]) lowlink[v] = lowlink[w]
        } else if (on_stack[w] && index_of[w] < lowlink[v]) {
            lowlink[v] = index_of[w]
        }
    }
    if (lowlink[v] == index_of[v]) {
        ncomp++
        members[ncomp] = ""
        do {
            w = stack[sp--]
            on_stack[w] = 0
            comp[w] = ncomp
            members[ncomp] = members[ncomp] (members[ncomp] == "" ? "" : " ") w
        } while (w != v)
        members[ncomp] = sortwords(members[ncomp])
    }
}
# A shortest path from a back to a inside component c (breadth first), as "a b ... a".
function cycle_in(c, a,    q, head, tail, prev, seen, x, i, w, path) {
    head = 1; tail = 0
    for (i = 1; i <= nout[a]; i++) {
        w = out[a, i]
        if (comp[w] == c && !(w in seen)) { seen[w] = 1; prev[w] = a; q[++tail] = w }
    }
    while (head <= tail) {
        x = q[head++]
        if (x == a) break
        for (i = 1; i <= nout[x]; i++) {
            w = out[x, i]
            if (comp[w] == c && !(w in seen)) { seen[w] = 1; prev[w] = x; q[++tail] = w }
        }
    }
    path = a
    for (x = prev[a]; x != a; x = prev[x]) path = x " " path
    return a " " path
}
$2 == "D" { def[$3] = $1; mods[$1] = 1; next }
$2 == "U" { used[++nused] = $1 SUBSEP $3; mods[$1] = 1 }
END {
    while ((getline line < allowfile) > 0) {
        sub(/#.*/, "", line)
        gsub(/<->|->|,/, " ", line)
        gsub(/[ \t]+/, " ", line)
        sub(/^ /, "", line); sub(/ $/, "", line)
        if (line != "") allowed[sortwords(line)] = 0
    }
    for (k = 1; k <= nused; k++) {
        split(used[k], pair, SUBSEP)
        a = pair[1]; s = pair[2]
        if (!(s in def)) continue        # libc, curl, MHD ...
        b = def[s]
        if (a == b) continue
        if (!((a, b) in edge)) { edge[a, b] = s; out[a, ++nout[a]] = b }
        else if (index(", " edge[a, b] ", ", ", " s ", ") == 0) edge[a, b] = edge[a, b] ", " s
    }
    # visit modules in name order so the output is stable
    n = 0
    for (m in mods) names[++n] = m
    for (i = 2; i <= n; i++) {
        t = names[i]
        for (j = i - 1; j >= 1 && names[j] > t; j--) names[j + 1] = names[j]
        names[j + 1] = t
    }
    for (i = 1; i <= n; i++) {
        m = names[i]
        for (x = 1; x <= nout[m]; x++) sorted_out[x] = out[m, x]
        for (x = 2; x <= nout[m]; x++) {
            t = sorted_out[x]
            for (j = x - 1; j >= 1 && sorted_out[j] > t; j--) sorted_out[j + 1] = sorted_out[j]
            sorted_out[j + 1] = t
        }
        for (x = 1; x <= nout[m]; x++) out[m, x] = sorted_out[x]
    }
    for (i = 1; i <= n; i++) if (!(names[i] in index_of)) strong(names[i])

    bad = 0
    for (c = 1; c <= ncomp; c++) {
        if (split(members[c], ms, " ") < 2) continue
        path = cycle_in(c, ms[1])
        np = split(path, p, " ")
        text = p[1]; why = ""
        for (i = 2; i <= np; i++) {
            text = text " -> " p[i]
            why = why (why == "" ? "" : "; ") p[i - 1] " -> " p[i] ": " edge[p[i - 1], p[i]]
        }
        if (members[c] in allowed) {
            allowed[members[c]] = 1
            printf "known cycle (allowed): %s (%s)\n", text, why
            continue
        }
        bad = 1
        # one shortest cycle through each module of the component, each printed once
        nm = split(members[c], ms, " ")
        for (k = 1; k <= nm; k++) {
            path = cycle_in(c, ms[k])
            np = split(path, p, " ")
            # start the printed cycle at its smallest name, so duplicates compare equal
            lo = 1
            for (i = 2; i < np; i++) if (p[i] < p[lo]) lo = i
            text = p[lo]; why = ""
            for (i = 1; i < np; i++) {
                x = p[(lo + i - 2) % (np - 1) + 1]; y = p[(lo + i - 1) % (np - 1) + 1]
                text = text " -> " y
                why = why (why == "" ? "" : "; ") x " -> " y ": " edge[x, y]
            }
            if (text in printed) continue
            printed[text] = 1
            printf "cycle: %s (%s)\n", text, why
        }
        for (e in allowed) {
            ne = split(e, es, " "); inside = 1
            for (i = 1; i <= ne; i++) if (comp[es[i]] != c) inside = 0
            if (inside) {
                allowed[e] = 1
                printf "  (the allowed cycle {%s} grew into {%s})\n", e, members[c]
            }
        }
    }
    for (e in allowed)
        if (!allowed[e])
            printf "note: allowed cycle {%s} no longer exists: remove it from the allow-list\n", e
    order = ""
    for (c = 1; c <= ncomp; c++) {
        item = members[c]
        if (index(item, " ")) item = "{" item "}"
        order = order (order == "" ? "" : " ") item
    }
    print "module order, bottom up: " order
    if (bad) {
        print "check_modules: FAIL: modules must form a DAG (see the cycles above)"
        exit 1
    }
    print "check_modules: ok"
}'
