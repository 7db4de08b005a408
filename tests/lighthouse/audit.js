#!/usr/bin/env node
/* Robot Race: Lighthouse with its default mobile settings on each page given, one page after
 * another (one Chromium at a time: the machines have 2 cores).
 *
 *   node tests/lighthouse/audit.js [--cookie 'rr_<game>=<token>'] [--min 0.95] [--out DIR] URL...
 *
 * Prints one line per page: the four category scores, the `font-size` audit's score (legible
 * text) and how long the run took. Exits 1 when a category scores under --min (0.95) or the
 * font-size or meta-description audit fails, or the page redirected elsewhere (a race page whose
 * cookie was refused), listing the failing audits' titles under the page; exits 2 when
 * Lighthouse itself could not run (not installed, no Chromium, page not loaded: a 404 is that).
 * --cookie: a Cookie header sent with every request (the race page's player cookie).
 * --out: keep each page's full JSON report there (page-1.json, ...).
 * Chromium: $CHROME_PATH, else /usr/bin/chromium; extra flags in $LIGHTHOUSE_CHROME_FLAGS.
 * Needs `npm ci` in tests/lighthouse first (lighthouse is its only dependency). */
"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const CATEGORIES = ["performance", "accessibility", "best-practices", "seo"];
// audits that must pass whatever their category's score
const REQUIRED = ["font-size", "meta-description"];

function usage(msg) {
  if (msg) console.error("audit.js: " + msg);
  console.error("usage: node audit.js [--cookie HEADER] [--min 0.95] [--out DIR] URL...");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { cookie: null, min: 0.95, out: null, urls: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(a + " needs a value");
      return argv[++i];
    };
    if (a === "--cookie") opts.cookie = value();
    else if (a === "--min") opts.min = Number(value());
    else if (a === "--out") opts.out = value();
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("--")) usage("unknown option " + a);
    else opts.urls.push(a);
  }
  if (!opts.urls.length) usage("no URL");
  if (!(opts.min >= 0 && opts.min <= 1)) usage("--min takes a number from 0 to 1");
  return opts;
}

function chromePath() {
  if (process.env.CHROME_PATH) return process.env.CHROME_PATH;
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]) {
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

// One Lighthouse run (its CLI, in its own process, which starts and ends its Chromium).
function runLighthouse(url, cookie, reportPath) {
  const cli = path.join(__dirname, "node_modules", "lighthouse", "cli", "index.js");
  if (!fs.existsSync(cli)) {
    return Promise.reject(new Error("Lighthouse is not installed: run `npm ci` in " + __dirname));
  }
  let flags = "--headless=new --no-sandbox --disable-dev-shm-usage";
  if (process.env.LIGHTHOUSE_CHROME_FLAGS) flags += " " + process.env.LIGHTHOUSE_CHROME_FLAGS;
  const args = [cli, url, "--output=json", "--output-path=" + reportPath, "--quiet",
    "--only-categories=" + CATEGORIES.join(","), "--chrome-flags=" + flags];
  if (cookie) args.push("--extra-headers=" + JSON.stringify({ Cookie: cookie }));
  const env = Object.assign({}, process.env);
  const chrome = chromePath();
  if (chrome) env.CHROME_PATH = chrome;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => { err = (err + d).slice(-4000); });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0 && fs.existsSync(reportPath)) resolve(JSON.parse(fs.readFileSync(reportPath, "utf8")));
      else reject(new Error("lighthouse exited " + code + ": " + err.trim()));
    });
  });
}

function fmt(score) {
  return score == null ? " n/a" : score.toFixed(2);
}

function sameUrl(a, b) {
  try {
    return new URL(a).href === new URL(b).href;
  } catch (e) {
    return a === b;
  }
}

// The audits that cost points: in a category under the bar, every weighted audit not passed;
// the required audits wherever they stand; and a redirect (the page audited was another one).
function failures(url, lhr, min) {
  const out = [];
  const landed = lhr.finalDisplayedUrl || lhr.finalUrl;
  if (landed && !sameUrl(url, landed)) out.push("redirected to " + landed + " (audited that page)");
  const seen = new Set();
  for (const id of CATEGORIES) {
    const cat = lhr.categories[id];
    if (!cat || cat.score == null || cat.score >= min) continue;
    for (const ref of cat.auditRefs) {
      const audit = lhr.audits[ref.id];
      if (!audit || ref.weight === 0 || audit.score == null || audit.score >= 0.9) continue;
      if (seen.has(ref.id)) continue;
      seen.add(ref.id);
      out.push(id + ": " + audit.title + " [" + ref.id + " " + fmt(audit.score) + "]" +
        (audit.displayValue ? " " + audit.displayValue : ""));
    }
  }
  for (const id of REQUIRED) {
    const audit = lhr.audits[id];
    if (seen.has(id) || !audit) continue;
    if (audit.score !== 1) {
      out.push("required: " + audit.title + " [" + id + " " + fmt(audit.score) + "]" +
        (audit.displayValue ? " " + audit.displayValue : ""));
    }
  }
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const dir = opts.out || fs.mkdtempSync(path.join(os.tmpdir(), "rr-lighthouse-"));
  fs.mkdirSync(dir, { recursive: true });
  let failed = 0;
  let broken = 0;
  for (let i = 0; i < opts.urls.length; i++) {
    const url = opts.urls[i];
    const report = path.join(dir, "page-" + (i + 1) + ".json");
    const t0 = Date.now();
    let lhr;
    try {
      lhr = await runLighthouse(url, opts.cookie, report);
    } catch (e) {
      broken++;
      console.log("ERROR " + url + ": " + e.message);
      continue;
    }
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (lhr.runtimeError) {
      broken++;
      console.log("ERROR " + url + ": " + lhr.runtimeError.code + " " + lhr.runtimeError.message);
      continue;
    }
    const scores = CATEGORIES.map((c) => c + " " + fmt(lhr.categories[c] && lhr.categories[c].score));
    const font = lhr.audits["font-size"];
    const bad = failures(url, lhr, opts.min);
    const verdict = bad.length ? "FAIL" : "ok";
    console.log(verdict + " " + url + "  " + scores.join("  ") + "  font-size " +
      fmt(font && font.score) + (font && font.displayValue ? " (" + font.displayValue + ")" : "") +
      "  " + secs + "s");
    for (const b of bad) console.log("    " + b);
    if (bad.length) failed++;
  }
  if (!opts.out) fs.rmSync(dir, { recursive: true, force: true });
  console.log(failed + broken === 0
    ? "all " + opts.urls.length + " pages pass (every category >= " + opts.min + ", font-size and meta-description pass)"
    : failed + " page(s) under the bar, " + broken + " not audited");
  process.exit(broken ? 2 : failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(2);
});
