// dashboard.mjs - the browser half of check_dashboard.sh (see there).
//
// node dashboard.mjs PROXY_URL ADMIN_URL FAILING_STUB_URL TOKEN SCREENSHOT_DIR PROFILE_DIR
// with DASHBOARD_NODE_MODULES (a node_modules holding playwright-core) and CHROMIUM set.
// Every wait is a bounded poll; exits 0 when every check passed, 1 otherwise.
import { createRequire } from "node:module";
import path from "node:path";

const [proxy, admin, failing, token, shots, profile] = process.argv.slice(2);
const require = createRequire(path.join(process.env.DASHBOARD_NODE_MODULES, "noop.js"));
const { chromium } = require("playwright-core");

const auth = { Authorization: "Bearer " + token };
let failed = 0;
function ok(what) {
    console.log("PASS: " + what);
}
function bad(what) {
    console.log("FAIL: " + what);
    failed++;
}
function check(cond, what) {
    if (cond) ok(what);
    else bad(what);
    return cond;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// poll fn() until it returns a truthy value, at most ms; returns the last value
async function until(fn, ms) {
    const end = Date.now() + ms;
    let v;
    for (;;) {
        try {
            v = await fn();
        } catch (e) {
            v = undefined;
        }
        if (v || Date.now() > end) return v;
        await sleep(100);
    }
}
async function services() {
    const r = await fetch(admin + "/v1/services", { headers: auth });
    return (await r.json()).services;
}
function endpoint(list, svc, i) {
    const s = list.find((x) => x.name === svc);
    return s && s.endpoints[i];
}
async function call(svc) {
    try {
        const r = await fetch(proxy + "/" + svc + "/item", { signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        return r.status;
    } catch (e) {
        return 0;
    }
}

// ---- 1. the second orders endpoint fails until its breaker opens -----------------
await fetch(failing + "/_stub/mode", { method: "POST", body: JSON.stringify({ status: 503 }) });
const opened = await until(async () => {
    await Promise.all([call("orders"), call("orders"), call("billing")]);
    const e = endpoint(await services(), "orders", 1);
    return e && e.state === "open";
}, 20000);
if (!check(opened, "orders #1 breaker opened under 503s (before the page)")) process.exit(1);
// from now on that stub answers 200, so a reset closes the breaker for good
await fetch(failing + "/_stub/reset", { method: "POST" });

// steady traffic on both services while the page watches (bounded: stopped below)
let traffic = true;
const pump = (async () => {
    for (let n = 0; traffic && n < 5000; n++) {
        await Promise.all([call("orders"), call("billing")]);
        await sleep(40);
    }
})();

// ---- 2. the page in headless Chromium ---------------------------------------------
const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
});
try {
    const page = browser.pages()[0] || (await browser.newPage());
    const foreign = [];
    const errors = [];
    page.on("request", (req) => {
        if (!req.url().startsWith(admin + "/")) foreign.push(req.url());
    });
    page.on("pageerror", (err) => errors.push(String(err)));
    page.on("console", (msg) => {
        if (msg.type() === "error" && !/401/.test(msg.text())) errors.push(msg.text());
    });

    const resp = await page.goto(admin + "/", { waitUntil: "load", timeout: 15000 });
    check(resp && resp.status() === 200, "GET / without a token serves the page (200)");
    check(/^text\/html/.test(resp.headers()["content-type"] || ""), "the page is text/html");
    // the data needs the token: the page asks for it
    const asked = await until(() => page.isVisible("#auth"), 10000);
    check(asked, "the page asks for the admin token after a 401");
    await page.fill("#token", token);
    await page.click("#authform button[type=submit]");
    const live = await until(async () => (await page.textContent("#conn")) === "live", 10000);
    check(live, "with the token the page goes live");
    check(await page.evaluate(() => sessionStorage.getItem("ahoyd-admin-token")) === token,
        "the token is kept in sessionStorage");

    const pill = '[data-endpoint="orders/1"] [data-k=state] .pill';
    const st = await until(async () => {
        const s = await page.getAttribute(pill, "data-state");
        return s === "open" ? s : null;
    }, 10000);
    check(st === "open", "orders #1 shows as open");
    const cls = await page.getAttribute(pill, "class");
    check(/s-open/.test(cls || ""), "the open breaker has the open colour (" + cls + ")");
    const closed0 = await page.getAttribute('[data-endpoint="orders/0"] [data-k=state] .pill',
        "data-state");
    check(closed0 === "closed", "orders #0 shows as closed");

    const nonzero = (t) => t && t !== "0" && t !== "\u2014" && parseFloat(t) > 0;
    const rates = await until(async () => {
        const a = await page.textContent('[data-service="orders"] [data-k=rate10]');
        const b = await page.textContent('[data-service="billing"] [data-k=rate10]');
        return nonzero(a) && nonzero(b) ? [a, b] : null;
    }, 15000);
    check(rates, "request rates are non-zero (orders, billing: " + rates + ")");
    const p50 = await page.textContent('[data-service="orders"] [data-k=p50]');
    check(/s$/.test(p50 || ""), "orders shows a p50 latency (" + p50 + ")");
    const retries = await page.textContent('[data-service="orders"] [data-k=retries]');
    check(parseInt(retries, 10) > 0, "orders shows its retries (" + retries + ")");
    // a few seconds of samples: the sparkline draws them (and the screenshot shows them)
    const pts = await until(async () => {
        const p = await page.getAttribute('[data-service="orders"] polyline', "points");
        return p && p.split(" ").length >= 8 ? p : null;
    }, 20000);
    check(pts, "the sparkline draws the samples");

    // ---- 3. reset from the page ------------------------------------------------------
    await page.click('[data-endpoint="orders/1"] [data-k=action] button');
    const closed = await until(async () =>
        (await page.getAttribute(pill, "data-state")) === "closed", 10000);
    check(closed, "after reset orders #1 shows as closed");
    const e = endpoint(await services(), "orders", 1);
    check(e && e.state === "closed", "/v1/services agrees: orders #1 is " + (e && e.state));
    const evs = await page.textContent("#events");
    check(/open \u2192 closed/.test(evs), "the events list shows the breaker open \u2192 closed");
    check(/reset from this page/.test(evs), "the events list shows the reset");

    // ---- 4. the breaker opens again while the page watches ------------------------------
    await fetch(failing + "/_stub/mode", { method: "POST", body: JSON.stringify({ status: 503 }) });
    const reopened = await until(async () =>
        (await page.getAttribute(pill, "data-state")) === "open", 15000);
    check(reopened, "orders #1 shows as open again under 503s");
    const ev2 = await until(async () => {
        const t = await page.textContent("#events");
        return /closed \u2192 open/.test(t) ? t : null;
    }, 5000);
    check(ev2, "the events list shows the breaker closed \u2192 open");
    await sleep(2000); // a little more history in the sparkline for the screenshot
    await page.screenshot({ path: path.join(shots, "dashboard.png") });
    ok("screenshot " + path.join(shots, "dashboard.png"));

    // the same page on a phone and in dark mode
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: "dark" });
    await sleep(1200);
    const overflow = await page.evaluate(() =>
        document.documentElement.scrollWidth > window.innerWidth + 1);
    check(!overflow, "no horizontal page scroll on a 390 px wide screen (tables scroll inside)");
    await page.screenshot({ path: path.join(shots, "dashboard-phone-dark.png"), fullPage: true });
    ok("screenshot " + path.join(shots, "dashboard-phone-dark.png"));

    check(foreign.length === 0, "the page loads nothing from elsewhere" +
        (foreign.length ? " (" + foreign.join(", ") + ")" : ""));
    check(errors.length === 0, "no script error in the page" +
        (errors.length ? " (" + errors.join("; ") + ")" : ""));
} catch (err) {
    bad("browser test: " + (err && err.stack ? err.stack : err));
} finally {
    traffic = false;
    await pump;
    await browser.close();
}
process.exit(failed ? 1 : 0);
