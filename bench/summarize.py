#!/usr/bin/python3
"""summarize.py - turn bench/run's raw records into the Markdown report.

Usage: summarize.py META RESULTS

META holds key=value lines (machine, versions); RESULTS one record per line,
"kind=... key=value ...", written by bench/run. Figures over rounds are
medians; errors are summed over rounds. Every target is printed as a
PASS/FAIL line at the end. Python 3 standard library only.
"""
import statistics
import sys

DOORS = ["direct", "haproxy", "nginx", "ahoyd"]


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def read_records(path):
    recs = []
    with open(path) as f:
        for line in f:
            rec = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    rec[k] = v
            if rec:
                recs.append(rec)
    return recs


def num(v, default=0.0):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def ms(us):
    return "%.2f" % (us / 1000.0)


def mib(kb):
    return "%.1f" % (kb / 1024.0)


def ratio(a, b):
    return a / b if b else float("nan")


class Runs:
    """Medians of one scenario's runs, per door."""

    def __init__(self, recs, scen, clk_tck):
        self.by_door = {}
        for r in recs:
            if r.get("kind") == "run" and r.get("scen") == scen:
                self.by_door.setdefault(r["door"], []).append(r)
        self.clk = clk_tck

    def has(self, door):
        return door in self.by_door

    def med(self, door, key):
        vals = [num(r.get(key)) for r in self.by_door.get(door, [])]
        return statistics.median(vals) if vals else float("nan")

    def spread(self, door, key):
        vals = [num(r.get(key)) for r in self.by_door.get(door, [])]
        if len(vals) < 2 or not statistics.median(vals):
            return 0.0
        return (max(vals) - min(vals)) / statistics.median(vals) * 100

    def cpu_us(self, door):
        vals = []
        for r in self.by_door.get(door, []):
            n = num(r.get("requests"))
            if n > 0:
                vals.append(num(r.get("cpu_ticks")) / self.clk * 1e6 / n)
        return statistics.median(vals) if vals else float("nan")

    def rss_max(self, door):
        return max((num(r.get("rss_kb")) for r in self.by_door.get(door, [])), default=0)

    def errors(self, door):
        sock = status = 0
        for r in self.by_door.get(door, []):
            sock += sum(int(num(r.get(k))) for k in
                        ("err_connect", "err_read", "err_write", "err_timeout"))
            status += int(num(r.get("err_status")))
        return sock, status

    def rounds(self, door):
        return len(self.by_door.get(door, []))

    def added(self, door, key="p50"):
        """Median over rounds of the door's figure minus the direct one of the same round."""
        direct = {r.get("round"): num(r.get(key)) for r in self.by_door.get("direct", [])}
        vals = [num(r.get(key)) - direct[r.get("round")] for r in self.by_door.get(door, [])
                if r.get("round") in direct]
        return statistics.median(vals) if vals else float("nan")


def scenario_table(out, title, runs, note_direct):
    out.append("### " + title)
    out.append("")
    out.append("| door | req/s (spread) | p50 ms | p99 ms | p99.9 ms | CPU µs/req | RSS MiB "
               "| non-2xx | socket errors | foreign CPU % |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in DOORS:
        if not runs.has(d):
            continue
        sock, status = runs.errors(d)
        cpu = "%.1f" % runs.cpu_us(d)
        rss = mib(runs.rss_max(d))
        name = d
        if d == "direct":
            name = "direct (CPU, RSS: %s)" % note_direct
        out.append("| %s | %.0f (±%.0f%%) | %s | %s | %s | %s | %s | %d | %d | %.0f |" % (
            name, runs.med(d, "rps"), runs.spread(d, "rps") / 2, ms(runs.med(d, "p50")),
            ms(runs.med(d, "p99")), ms(runs.med(d, "p999")), cpu, rss, status, sock,
            runs.med(d, "foreign_pct")))
    for other in ("haproxy", "nginx"):
        if runs.has("ahoyd") and runs.has(other):
            out.append("| **ahoyd / %s** | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | | | |" % (
                other, ratio(runs.med("ahoyd", "rps"), runs.med(other, "rps")),
                ratio(runs.med("ahoyd", "p50"), runs.med(other, "p50")),
                ratio(runs.med("ahoyd", "p99"), runs.med(other, "p99")),
                ratio(runs.med("ahoyd", "p999"), runs.med(other, "p999")),
                ratio(runs.cpu_us("ahoyd"), runs.cpu_us(other)),
                ratio(runs.rss_max("ahoyd"), runs.rss_max(other))))
    out.append("")


def parse_strace(path):
    rows = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return rows
    for line in lines:
        parts = line.split()
        if len(parts) < 5 or parts[0].startswith("%") or parts[0].startswith("-"):
            continue
        name = parts[-1]
        if name == "total":
            continue
        # % time, seconds, usecs/call, calls, [errors], syscall
        try:
            calls = int(parts[3])
        except ValueError:
            continue
        errors = int(parts[4]) if len(parts) == 6 else 0
        rows.append((name, calls, errors))
    return rows


def parse_perfstat(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and ":" in parts[1] and parts[0].replace(",", "").isdigit():
                    rows.append((parts[1], int(parts[0].replace(",", ""))))
    except OSError:
        pass
    return rows


def main():
    meta = read_meta(sys.argv[1])
    recs = read_records(sys.argv[2])
    clk = num(meta.get("clk_tck"), 100.0)
    out = []
    checks = []
    late_checks = []

    out.append("# ahoyd benchmark")
    out.append("")
    out.append("- machine: %s cores, %s, %s (load average at start: %s); shared, nothing pinned" % (
        meta.get("nproc"), meta.get("cpu"), meta.get("kernel"), meta.get("loadavg")))
    out.append("- versions: %s; %s; %s; %s; libmicrohttpd %s; libcurl %s" % (
        meta.get("haproxy"), meta.get("nginx"), meta.get("wrk"), meta.get("ahoyd"),
        meta.get("libmicrohttpd"), meta.get("libcurl")))
    out.append("- %s date %s; %s round(s), medians; durations: %s" % (
        "run", meta.get("date"), meta.get("rounds"), meta.get("durations")))
    out.append("- upstreams: nginx (1 worker) answering a 207-byte JSON; bench/delay_upstream "
               "(epoll, one thread) answering the same JSON after 10 ms")
    out.append("- CPU µs/req: utime+stime of the door's processes (/proc/PID/stat, all threads) "
               "over the run ÷ requests wrk completed; nginx = master + worker; RSS = VmRSS "
               "(nginx: master + worker), the largest seen after a run")
    out.append("- load average at the end: %s; foreign CPU %% = CPU used by other processes "
               "on the machine during a run (not the door, its upstream or wrk), in %% of all "
               "cores (median over rounds)" % meta.get("loadavg_end"))
    foreign = [num(r.get("foreign_pct")) for r in recs if r.get("kind") == "run"]
    busy = [f for f in foreign if f > 15]
    if busy:
        out.append("- **WARNING: the machine was busy with other work in %d of %d runs "
                   "(foreign CPU > 15 %%, up to %.0f %%): absolute figures are depressed and "
                   "noisy; the interleaved ratios are the better guide.**" % (
                       len(busy), len(foreign), max(busy)))
    info = [r for r in recs if r.get("kind") == "info"]
    if info:
        out.append("- ahoyd: workers: %s (threads: %s); haproxy: nbthread 1; nginx: "
                   "worker_processes 1" % (info[0].get("ahoyd_workers", "1"),
                                           info[0].get("ahoyd_threads")))
    out.append("")

    ka = Runs(recs, "ka", clk)
    close = Runs(recs, "close", clk)
    slow = Runs(recs, "slow", clk)
    one = Runs(recs, "one", clk)
    if ka.by_door:
        scenario_table(out, "1. Fast upstream, keep-alive: wrk -t2 -c64 --latency", ka,
                       "origin nginx")
        scenario_table(out, "1b. Fast upstream, Connection: close: wrk -t2 -c16", close,
                       "origin nginx")
        if one.by_door:
            scenario_table(out, "1c. Fast upstream, one connection: wrk -t1 -c1", one,
                           "origin nginx")
            out.append("Added latency at one connection (p50 through the door minus the direct "
                       "p50 of the same round, median over rounds): " + ", ".join(
                           "%s %.0f µs" % (d, one.added(d)) for d in ("haproxy", "nginx", "ahoyd")
                           if one.has(d)) + ".")
            out.append("")
        scenario_table(out, "2. 10 ms upstream, keep-alive: wrk -t2 -c256", slow,
                       "delay_upstream")
        best_proxy = max(slow.med(d, "rps") for d in ("haproxy", "nginx", "ahoyd")
                         if slow.has(d))
        if slow.has("direct"):
            out.append("Direct 10 ms upstream at %.0f req/s = %.2f × the best proxy "
                       "(the upstream is %s the bottleneck)." % (
                           slow.med("direct", "rps"), ratio(slow.med("direct", "rps"), best_proxy),
                           "not" if slow.med("direct", "rps") > 1.15 * best_proxy else
                           "possibly"))
            out.append("")

    rss = {}
    for r in recs:
        if r.get("kind") == "rss":
            rss[(r["door"], r["phase"])] = r
    if rss:
        out.append("### 3. Memory: RSS idle after start, holding 1000 keep-alive connections, "
                   "after the load")
        out.append("")
        out.append("| door | idle MiB | 1000 conns MiB | fds (1000 conns) | answered ok/failed "
                   "| still open | after load MiB |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for d in DOORS:
            i, c, a = rss.get((d, "idle")), rss.get((d, "conns")), rss.get((d, "after"))
            if not i:
                continue
            out.append("| %s | %s | %s | %s | %s/%s | %s | %s |" % (
                d + (" (origin nginx)" if d == "direct" else ""), mib(num(i.get("rss_kb"))),
                mib(num(c.get("rss_kb"))) if c else "-", c.get("fds", "-") if c else "-",
                c.get("ok", "?") if c else "-", c.get("failed", "?") if c else "-",
                c.get("alive", "?") if c else "-",
                mib(num(a.get("rss_kb"))) if a else "-"))
        out.append("")

    growth = {r["phase"]: r for r in recs if r.get("kind") == "growth"}
    if growth:
        f, e = growth.get("first"), growth.get("end")
        out.append("### 4. Growth: ahoyd over %s requests" % (e.get("requests") if e else "?"))
        out.append("")
        out.append("| after requests | RSS MiB | fds |")
        out.append("|---:|---:|---:|")
        for g in (f, e):
            if g:
                out.append("| %s | %s | %s |" % (g.get("requests"), mib(num(g.get("rss_kb"))),
                                                g.get("fds")))
        out.append("")
        if f and e:
            r0, r1 = num(f.get("rss_kb")), num(e.get("rss_kb"))
            f0, f1 = num(f.get("fds")), num(e.get("fds"))
            ok_rss = abs(r1 - r0) <= 0.05 * r0
            # fewer fds at the end is not growth: curl's idle upstream connections vary
            ok_fds = f1 <= f0 + max(0.05 * f0, 2)
            late_checks.append(("growth: RSS at end within ±5 %% of RSS after the first "
                                "requests (%s → %s MiB)" % (mib(r0), mib(r1)), ok_rss))
            late_checks.append(("growth: fds at end not above after the first requests + 5 %% "
                                "(at least +2): %d → %d" % (f0, f1), ok_fds))
            late_checks.append(("growth: %s requests, no errors (%s)" % (
                e.get("requests"), e.get("errors", "?")),
                num(e.get("requests")) >= 1000000 and num(e.get("errors")) == 0))

    st = [r for r in recs if r.get("kind") == "strace"]
    ps = [r for r in recs if r.get("kind") == "perfstat"]
    if st or ps:
        out.append("### Profile: syscalls per request of ahoyd (keep-alive, -c64)")
        out.append("")
        srows = parse_strace(st[0]["file"]) if st else []
        sreq = num(st[0].get("requests")) if st else 0
        prows = dict(parse_perfstat(ps[0]["file"])) if ps else {}
        preq = num(ps[0].get("requests")) if ps else 0
        out.append("strace -c over %d requests (traced, slowed down); perf stat tracepoints "
                   "over %d requests at full speed (%s req/s)." % (
                       sreq, preq, ps[0].get("rps") if ps else "?"))
        out.append("")
        out.append("| syscall | strace calls/req | strace errors/req | perf stat calls/req |")
        out.append("|---|---:|---:|---:|")
        total_s = 0
        for name, calls, errors in sorted(srows, key=lambda x: -x[1]):
            total_s += calls
            pc = prows.get("syscalls:sys_enter_" + name)
            out.append("| %s | %.2f | %.2f | %s |" % (
                name, calls / sreq if sreq else 0, errors / sreq if sreq else 0,
                "%.2f" % (pc / preq) if pc is not None and preq else "-"))
        tot_p = prows.get("raw_syscalls:sys_enter")
        out.append("| **total** | %.2f | | %s |" % (
            total_s / sreq if sreq else 0,
            "%.2f" % (tot_p / preq) if tot_p is not None and preq else "-"))
        out.append("")
    sc = [r for r in recs if r.get("kind") == "sysc"]
    if sc:
        out.append("Every door under the same load (wrk -t2 -c64 3 s, perf stat "
                   "raw_syscalls:sys_enter, in-kernel counting):")
        out.append("")
        out.append("| door | requests | syscalls/req | CPU µs/req |")
        out.append("|---|---:|---:|---:|")
        for r in sc:
            n = num(r.get("requests"))
            out.append("| %s | %d | %s | %s |" % (
                r.get("door"), n, "%.2f" % (num(r.get("syscalls")) / n) if n else "-",
                "%.1f" % (num(r.get("cpu_ticks")) / clk * 1e6 / n) if n else "-"))
        out.append("")
    al = [r for r in recs if r.get("kind") == "alloc"]
    if al:
        a = al[0]
        n = num(a.get("requests"))
        out.append("Heap allocations per request of ahoyd (bench/malloc_count.so preloaded, "
                   "wrk -t2 -c64, %d requests):" % n)
        out.append("")
        out.append("| malloc | calloc | realloc | aligned | **all** | free | bytes asked |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|")
        if n:
            k = ("malloc", "calloc", "realloc", "aligned")
            out.append("| %s | **%.2f** | %.2f | %.0f |" % (
                " | ".join("%.2f" % (num(a.get(x)) / n) for x in k),
                sum(num(a.get(x)) for x in k) / n, num(a.get("free")) / n,
                num(a.get("bytes")) / n))
        out.append("")
    co = [r for r in recs if r.get("kind") == "cost"]
    if co:
        try:
            with open(co[0]["file"]) as f:
                lines = f.read().rstrip().splitlines()
        except OSError:
            lines = []
        if lines:
            out.append("bench/cost (one worker, exactly 2,000 requests under callgrind, 20,000 "
                       "natively, 16 connections; load-independent):")
            out.append("")
            out.append("```")
            out.append(lines[0].split(" ", 1)[-1])
            out.append("```")
            out.append("")
            top = [ln for ln in lines[1:] if "%)" in ln and "PROGRAM TOTALS" not in ln
                   and "(100.0%)" not in ln]
            if top:
                out.append("#### callgrind: instructions, self (function [object])")
                out.append("")
                out.append("```")
                out.extend(ln[:150] for ln in top)
                out.append("```")
                out.append("")
    pf = [r for r in recs if r.get("kind") == "perf"]
    if pf:
        for key, title in (("self", "perf: self time (dso, symbol)"),
                           ("children", "perf: inclusive time (symbol)")):
            try:
                with open(pf[0][key]) as f:
                    body = f.read().rstrip()
            except OSError:
                continue
            out.append("#### " + title)
            out.append("")
            out.append("```")
            out.append(body)
            out.append("```")
            out.append("")

    if ka.has("ahoyd") and ka.has("haproxy"):
        a, h = ka, "haproxy"
        r = ratio(a.cpu_us("ahoyd"), a.cpu_us(h))
        checks.append(("fast upstream keep-alive 64 conns: CPU/request ahoyd/haproxy = %.2f "
                       "(<= 1.50; %.1f vs %.1f µs)" % (r, a.cpu_us("ahoyd"), a.cpu_us(h)),
                       r <= 1.5))
        r = ratio(a.med("ahoyd", "rps"), a.med(h, "rps"))
        checks.append(("fast upstream keep-alive 64 conns: throughput ahoyd/haproxy = %.2f "
                       "(>= 0.70)" % r, r >= 0.7))
        r = ratio(a.med("ahoyd", "p99"), a.med(h, "p99"))
        checks.append(("fast upstream keep-alive 64 conns: p99 ahoyd/haproxy = %.2f (<= 1.50; "
                       "%s vs %s ms)" % (r, ms(a.med("ahoyd", "p99")), ms(a.med(h, "p99"))),
                       r <= 1.5))
    if slow.has("ahoyd") and slow.has("haproxy"):
        r = ratio(slow.cpu_us("ahoyd"), slow.cpu_us("haproxy"))
        checks.append(("10 ms upstream 256 conns: CPU/request ahoyd/haproxy = %.2f (<= 1.50; "
                       "%.1f vs %.1f µs)" % (r, slow.cpu_us("ahoyd"), slow.cpu_us("haproxy")),
                       r <= 1.5))
        r = ratio(slow.med("ahoyd", "rps"), slow.med("haproxy", "rps"))
        checks.append(("10 ms upstream 256 conns: throughput ahoyd/haproxy = %.2f (>= 1.00)" % r,
                       r >= 1.0))
        sock, status = slow.errors("ahoyd")
        checks.append(("10 ms upstream 256 conns: ahoyd errors: %d non-2xx, %d socket "
                       "(must be 0)" % (status, sock), sock == 0 and status == 0))
    if one.has("ahoyd") and one.has("haproxy") and one.has("direct"):
        aa, ah = one.added("ahoyd"), one.added("haproxy")
        r = ratio(aa, ah) if ah > 0 else float("nan")
        checks.append(("one connection: added p50 latency ahoyd/haproxy = %.2f (<= 1.50; "
                       "%.0f vs %.0f µs over direct %.0f µs)" % (
                           r, aa, ah, one.med("direct", "p50")), r <= 1.5))
    i, c = rss.get(("ahoyd", "idle")), rss.get(("ahoyd", "conns"))
    if c:
        v = num(c.get("rss_kb")) / 1024
        ok = v <= 32 and c.get("ok") == "1000" and c.get("alive") == "1000"
        checks.append(("ahoyd RSS with 1000 keep-alive connections = %.1f MiB (<= 32 MiB; "
                       "%s of 1000 made a call, %s still open)" % (v, c.get("ok"),
                                                                  c.get("alive")), ok))
    if i:
        v = num(i.get("rss_kb")) / 1024
        checks.append(("ahoyd RSS idle = %.1f MiB (<= 15 MiB)" % v, v <= 15))
    for r in sc:
        n = num(r.get("requests"))
        if r.get("door") == "ahoyd" and n:
            v = num(r.get("syscalls")) / n
            checks.append(("profile: ahoyd syscalls/request = %.2f (<= 6; perf stat, "
                           "keep-alive 64 conns)" % v, v <= 6))
    if al and num(al[0].get("requests")):
        a = al[0]
        v = sum(num(a.get(x)) for x in ("malloc", "calloc", "realloc", "aligned")) / num(
            a.get("requests"))
        checks.append(("profile: ahoyd allocations/request = %.2f (<= 10; malloc, calloc, "
                       "realloc, aligned)" % v, v <= 10))

    checks += late_checks
    out.append("### Target checks")
    out.append("")
    out.append("```")
    for text, ok in checks:
        out.append("%s %s" % ("PASS" if ok else "FAIL", text))
    out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
