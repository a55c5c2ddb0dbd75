"""The usage page itself: one HTML document, its CSS and script inline, nothing from another origin.

It reads `/dashboard/data.json` (with the `token` of its own URL) every POLL_SECONDS while it is
visible and draws what it gets with DOM text nodes only (no markup from data). The chart is inline SVG.
"""

POLL_SECONDS = 5

PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">
<title>codex-api-proxy usage</title>
<style>
:root{--fg:#1d2330;--mute:#667085;--line:#e4e7ec;--bg:#f7f8fa;--card:#fff;--in:#7aa2f7;--cached:#3fb68b;
--out:#e0a33b;--reason:#b07ee8;--bad:#d9534f}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ee;--mute:#98a2b3;--line:#2d3340;--bg:#12151b;--card:#1a1e26}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:16px;align-items:baseline;padding:14px 22px;border-bottom:1px solid var(--line)}
header h1{font-size:18px;margin:0}header .mute{margin-left:auto}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px;padding:16px 22px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:14px;margin:0 0 10px;text-transform:uppercase;letter-spacing:.04em;
color:var(--mute)}table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:3px 8px 3px 0;border-bottom:1px solid var(--line);white-space:nowrap}
td.n,th.n{text-align:right}th{color:var(--mute);font-weight:500}.mute{color:var(--mute)}
.scroll{overflow-x:auto}.bad{color:var(--bad)}
.quota{margin:6px 0 12px}.quota .label{display:flex;justify-content:space-between}
.track{height:14px;background:var(--line);border-radius:7px;overflow:hidden;margin-top:4px}
.fill{height:100%;background:var(--in)}.fill.hi{background:var(--out)}.fill.full{background:var(--bad)}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:5px;vertical-align:-1px}svg{width:100%;height:180px;display:block}
#error{color:var(--bad)}.axis{display:flex;justify-content:space-between;font-size:12px}
</style></head><body>
<header><h1>codex-api-proxy usage</h1><span id="version" class="mute"></span>
<span id="updated" class="mute">loading…</span><span id="error"></span></header>
<main>
<section><h2>Plan usage</h2><div id="quota" class="mute">no figures yet</div></section>
<section><h2>Requests</h2><div id="totals"></div><table id="requests"></table>
<table id="errors"></table></section>
<section><h2>Latency (ms, mean and 95th percentile)</h2><div class="scroll"><table id="latency"></table></div></section>
<section class="wide"><h2>Tokens by model</h2><table id="tokens"></table>
<div class="legend" style="margin-top:10px"><span><i class="sw" style="background:var(--in)"></i>input (not cached)</span>
<span><i class="sw" style="background:var(--cached)"></i>cached input</span>
<span><i class="sw" style="background:var(--out)"></i>output</span>
<span class="mute" id="span"></span></div>
<svg id="chart" viewBox="0 0 900 180" preserveAspectRatio="none" role="img" aria-label="tokens per minute"></svg>
<div class="axis mute"><span>60 min ago</span><span>30 min ago</span><span>now</span></div>
</section>
<section class="wide"><h2>Conversations</h2><div class="scroll"><table id="conversations"></table></div></section>
<section class="wide"><h2>Recent requests</h2><div class="scroll"><table id="recent"></table></div></section>
</main>
<p id="note" class="mute" style="padding:0 22px 18px"></p>
<script>
"use strict";
const POLL = """
    + str(POLL_SECONDS * 1000)
    + """;
const token = new URLSearchParams(location.search).get("token") || "";
const url = "/dashboard/data.json" + (token ? "?token=" + encodeURIComponent(token) : "");
const $ = id => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const num = n => (n || 0).toLocaleString("en-US");
const pct = x => x == null ? "-" : (Math.round(x * 1000) / 10) + "%";
function dur(s) {
  if (s == null) return "?";
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m + "m";
}
function table(id, head, rows) {
  const t = $(id);
  t.replaceChildren(el("tr", {}, ...head.map(h => el("th", h.startsWith("#") ? {class: "n"} : {}, h.replace(/^#/, "")))));
  for (const r of rows) t.append(r);
  if (!rows.length) t.append(el("tr", {}, el("td", {class: "mute", colspan: head.length}, "nothing yet")));
}
const cell = (k, v, n) => el("td", {"data-k": k, class: n ? "n" : ""}, v);
const WINDOWS = {primary: "5-hour window", secondary: "weekly window"};
function quota(q) {
  const box = $("quota");
  if (!q) { box.textContent = "no figures yet (they come with the first answer from the backend)"; return; }
  box.replaceChildren();
  box.className = "";
  for (const name of ["primary", "secondary"]) {
    const w = q[name] || {};
    if (w.used_percent == null) continue;
    const used = Math.max(0, Math.min(100, w.used_percent));
    const fill = el("div", {class: "fill" + (used >= 100 ? " full" : used >= 80 ? " hi" : ""), style: "width:" + used + "%"});
    box.append(el("div", {class: "quota", "data-window": name},
      el("div", {class: "label"}, el("span", {}, WINDOWS[name] || name, " ",
        el("b", {"data-k": "used"}, w.used_percent + "%")),
        el("span", {class: "mute", "data-k": "reset"}, "resets in " + dur(w.reset_after_seconds))),
      el("div", {class: "track"}, fill)));
  }
  const extra = [];
  if (q.plan_type) extra.push("plan: " + q.plan_type);
  if (q.limit_reached) extra.push("usage limit reached");
  if (extra.length) box.append(el("div", {class: q.limit_reached ? "bad" : "mute"}, extra.join(" · ")));
}
function chart(series, now) {
  const svg = $("chart"), W = 900, H = 170, NS = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const minutes = 60, start = Math.floor(now / 60) * 60 - (minutes - 1) * 60;
  const sums = new Map();
  for (const b of series) {
    if (b.t < start) continue;
    const s = sums.get(b.t) || [0, 0, 0];
    for (const m of Object.values(b.models)) { s[0] += m.input - m.cached; s[1] += m.cached; s[2] += m.output; }
    sums.set(b.t, s);
  }
  const max = Math.max(1, ...[...sums.values()].map(s => s[0] + s[1] + s[2]));
  const bw = W / minutes;
  for (const [t, s] of sums) {
    let y = H;
    const x = (t - start) / 60 * bw;
    [["--in", s[0]], ["--cached", s[1]], ["--out", s[2]]].forEach(([c, v]) => {
      const h = v / max * (H - 10);
      if (h <= 0) return;
      y -= h;
      const r = document.createElementNS(NS, "rect");
      for (const [k, val] of Object.entries({x: x + 1, y, width: Math.max(1, bw - 2), height: h, fill: "var(" + c + ")"})) r.setAttribute(k, val);
      svg.append(r);
    });
  }
  const base = document.createElementNS(NS, "line");
  for (const [k, v] of Object.entries({x1: 0, x2: W, y1: H, y2: H, stroke: "currentColor", "stroke-opacity": .3})) base.setAttribute(k, v);
  svg.append(base);
  $("span").textContent = "tokens per minute, last hour (peak " + num(max) + ")";
}
function render(d) {
  $("version").textContent = "v" + d.version + " · up " + dur(d.uptime_seconds);
  quota(d.quota);
  $("totals").replaceChildren(el("p", {}, el("b", {"data-k": "requests_total"}, num(d.totals.requests_total)), " requests, ",
    el("b", {"data-k": "requests_error", class: d.totals.requests_error ? "bad" : ""}, num(d.totals.requests_error)), " errors, ",
    el("span", {"data-k": "streams"}, num(d.streams_in_flight)), " streams now"));
  table("requests", ["client API", "status", "#requests"], d.requests.map(r =>
    el("tr", {"data-api": r.api, "data-status": r.status}, el("td", {}, r.api), el("td", {class: r.status >= "4" ? "bad" : ""}, r.status), cell("requests", num(r.requests), 1))));
  const errs = [...Object.entries(d.errors_by_status).map(([s, n]) => ["HTTP " + s, n]),
                ...Object.entries(d.upstream_errors).map(([k, n]) => ["upstream " + k, n])];
  table("errors", ["error", "#count"], errs.map(([k, n]) => el("tr", {"data-error": k}, el("td", {}, k), cell("count", num(n), 1))));
  table("tokens", ["model", "#input", "#cached input", "#output", "#reasoning", "#cached share"],
    Object.entries(d.tokens).sort().map(([m, t]) => el("tr", {"data-model": m}, el("td", {}, m),
      cell("input", num(t.input), 1), cell("cached_input", num(t.cached_input), 1), cell("output", num(t.output), 1),
      cell("reasoning", num(t.reasoning), 1), cell("share", pct(t.input ? t.cached_input / t.input : null), 1))));
  chart(d.series, d.now);
  const lat = Object.keys(d.latency.total).sort();
  table("latency", ["client API", "#n", "#first byte", "#p95 ≤", "#total", "#p95 ≤"], lat.map(api => {
    const f = d.latency.first_byte[api] || {}, t = d.latency.total[api];
    return el("tr", {"data-api": api}, el("td", {}, api), cell("count", num(t.count), 1), cell("ttfb_mean", num(f.mean_ms), 1),
      cell("ttfb_p95", f.p95_ms == null ? ">" : num(f.p95_ms), 1), cell("total_mean", num(t.mean_ms), 1), cell("total_p95", t.p95_ms == null ? ">" : num(t.p95_ms), 1));
  }));
  table("conversations", ["conversation", "client API", "model", "#turns", "#input", "#cached share", "#output", "last cache miss"],
    d.conversations.map(c => el("tr", {"data-conversation": c.key}, el("td", {title: c.key}, c.key.length > 20 ? c.key.slice(0, 18) + "…" : c.key),
      el("td", {}, c.api), el("td", {}, c.model + " → " + c.model_sent), cell("turns", num(c.turns), 1), cell("input", num(c.input), 1),
      cell("share", pct(c.cached_share), 1), cell("output", num(c.output), 1), el("td", {class: "mute", "data-k": "miss"}, c.cache_miss || "-"))));
  table("recent", ["time", "client API", "model asked", "model used", "status", "#input", "#cached", "#output", "#ms"],
    d.recent.slice(0, 50).map(r => el("tr", {"data-api": r.api}, el("td", {}, new Date(r.time * 1000).toLocaleTimeString()),
      el("td", {}, r.api + (r.stream ? " (stream)" : "")), el("td", {}, r.model || "-"), el("td", {}, r.model_sent || "-"),
      el("td", {class: r.status >= 400 || !r.status ? "bad" : "", title: r.error}, r.status || "aborted"),
      cell("input", num(r.input), 1), cell("cached", num(r.cached), 1), cell("output", num(r.output), 1), cell("ms", num(Math.round(r.duration_ms)), 1))));
  $("note").textContent = d.note;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString() + ", every " + POLL / 1000 + " s";
}
let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const r = await fetch(url, {cache: "no-store", credentials: "omit"});
    if (!r.ok) throw new Error("the proxy answered " + r.status + (r.status === 401 ? ": open the URL `codex-api-proxy dashboard` prints" : ""));
    render(await r.json());
    $("error").textContent = "";
  } catch (e) { $("error").textContent = String(e.message || e); }
  if (!document.hidden) timer = setTimeout(refresh, POLL);
}
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
refresh();
</script></body></html>
"""
).encode()
