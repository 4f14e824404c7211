// SmartSwitch console: every page is drawn from /api/v1, the same API any
// client uses. No framework and nothing fetched from outside the appliance;
// the charts are drawn on <canvas> here.
"use strict";

const state = { csrf: null, session: null, history: [], stream: null, page: null, timer: null };
const $ = (sel) => document.querySelector(sel);

// ---- API ----

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch("/api/v1" + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
  if (r.status === 401) { showLogin(); }
  return { status: r.status, ok: r.ok, data };
}

// ---- formatting ----

function fmtNum(n) {
  if (n === null || n === undefined) return "-";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/* {le_50: 10, gt_5000: 0} -> "<=50 us 10 . >5000 us 0" (the counters' buckets) */
function fmtBuckets(b, unit) {
  return Object.entries(b || {}).map(([k, v]) => {
    const [op, n] = k.split("_");
    return (op === "le" ? "\u2264" : ">") + n + unit + " " + fmtNum(v);
  }).join(" \u00b7 ");
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + u[i];
}
function pct(x) { return (100 * x).toFixed(1) + "%"; }
function us(x) { return x >= 1000 ? (x / 1000).toFixed(1) + " ms" : x.toFixed(2) + " us"; }
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function fillRows(tbody, rows) {
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const v of row) cell(tr, v);
    tbody.appendChild(tr);
  }
}

// ---- charts ----

const COLORS = ["#2f7ed8", "#f28f43", "#8bbc21", "#910000"];

function chart(canvas, series, opts) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  let max = opts && opts.max ? opts.max : 0;
  for (const s of series) for (const v of s) max = Math.max(max, v);
  if (max <= 0) max = 1;
  ctx.strokeStyle = "#d6dde4";
  ctx.fillStyle = "#5a6b7d";
  ctx.font = "10px sans-serif";
  for (let i = 0; i <= 2; i++) {
    const y = pad / 2 + (h - pad) * i / 2;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
    const label = opts && opts.fmt ? opts.fmt(max * (1 - i / 2)) : fmtNum(max * (1 - i / 2));
    ctx.fillText(label, 0, y + 3);
  }
  series.forEach((s, k) => {
    if (s.length < 2) return;
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.forEach((v, i) => {
      const x = pad + (w - pad) * i / Math.max(1, s.length - 1);
      const y = pad / 2 + (h - pad) * (1 - v / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
}

function drawCharts() {
  const h = state.history;
  chart($("#chart-rps"), [h.map((p) => p.requests_per_s)]);
  chart($("#chart-hit"), [h.map((p) => p.hit_ratio.dram), h.map((p) => p.hit_ratio.device),
                          h.map((p) => p.hit_ratio.miss)], { max: 1, fmt: pct });
  chart($("#chart-latency"), [h.map((p) => p.latency.p50_us), h.map((p) => p.latency.p99_us)],
        { fmt: (v) => v.toFixed(1) });
  chart($("#chart-bytes"), [h.map((p) => p.bytes_in_per_s), h.map((p) => p.bytes_out_per_s)],
        { fmt: fmtBytes });
}

// ---- dashboard ----

function showSample(p) {
  $("#stat-rps").textContent = fmtNum(p.requests_per_s);
  $("#stat-hit-dram").textContent = pct(p.hit_ratio.dram);
  $("#stat-hit-device").textContent = pct(p.hit_ratio.device);
  $("#stat-miss").textContent = pct(p.hit_ratio.miss);
  $("#stat-p50").textContent = us(p.latency.p50_us);
  $("#stat-p99").textContent = us(p.latency.p99_us);
  $("#stat-bytes-in").textContent = fmtBytes(p.bytes_in_per_s);
  $("#stat-bytes-out").textContent = fmtBytes(p.bytes_out_per_s);
  $("#stat-conns").textContent = fmtNum(p.connections);
}

async function loadDashboard() {
  const hist = await api("GET", "/stats/history");
  if (hist.ok) state.history = hist.data.samples.slice(-300);
  const st = await api("GET", "/stats");
  if (st.ok) {
    $("#mode").textContent = "(" + st.data.mode + " mode)";
    $("#stat-requests-total").textContent = fmtNum(st.data.requests);
    if (st.data.sample) showSample(st.data.sample);
  }
  drawCharts();
  if (!state.stream) {
    // Server-sent events: one sample a second, no reload needed.
    state.stream = new EventSource("/api/v1/stats/stream");
    state.stream.onmessage = (ev) => {
      const p = JSON.parse(ev.data);
      state.history.push(p);
      if (state.history.length > 300) state.history.shift();
      if (state.page === "dashboard") {
        showSample(p);
        drawCharts();
        api("GET", "/stats").then((r) => {
          if (r.ok) $("#stat-requests-total").textContent = fmtNum(r.data.requests);
        });
      }
    };
  }
}

async function flush() {
  if (!window.confirm("Flush drops every item this appliance holds. Flush now?")) return;
  const r = await api("POST", "/flush", { confirm: true });
  $("#flush-result").textContent = r.ok ? "flushed" : r.data.error;
}

// ---- back ends ----

async function loadBackends() {
  const r = await api("GET", "/backends");
  if (!r.ok) return;
  $("#backends-mode").textContent = r.data.mode === "standalone"
    ? "Standalone mode: no back ends are configured." : "";
  const tbody = $("#backends-table tbody");
  tbody.replaceChildren();
  for (const b of r.data.backends) {
    const tr = document.createElement("tr");
    tr.dataset.name = b.name;
    cell(tr, b.name); cell(tr, b.address); cell(tr, b.pool);
    cell(tr, b.state, "state state-" + b.state);
    for (const k of ["requests", "errors", "timeouts", "in_flight", "p50_us", "p99_us"]) {
      cell(tr, fmtNum(b[k]));
    }
    const td = cell(tr, "");
    for (const action of ["drain", "eject", "restore"]) {
      const btn = document.createElement("button");
      btn.textContent = action;
      btn.dataset.action = action;
      btn.addEventListener("click", async () => {
        const res = await api("POST", "/backends/" + encodeURIComponent(b.name) + "/" + action);
        if (!res.ok) banner(res.data.error);
        loadBackends();
      });
      td.appendChild(btn);
    }
    tbody.appendChild(tr);
  }
}

// ---- storage, switch ----

async function loadStorage() {
  const r = await api("GET", "/storage");
  if (!r.ok) return;
  const d = r.data;
  fillRows($("#devices-table tbody"), d.devices.map((x) => [x.name, x.kind, x.path, fmtBytes(x.capacity)]));
  fillRows($("#pools-table tbody"), d.pools.map((p) => [
    p.name, p.role, p.device, fmtBytes(p.size), p.used === undefined ? "-" : fmtBytes(p.used),
    p.items === undefined ? "-" : fmtNum(p.items),
    p.segments_used === undefined ? "-" : p.segments_used + " / " + p.segments,
    p.served ? "yes" : "no"]));
  const s = d.store;
  fillRows($("#store-table tbody"), [
    ["items", fmtNum(s.items)], ["DRAM tier", fmtBytes(s.hot_bytes_used) + " of " + fmtBytes(s.hot_bytes_limit)],
    ["evictions", fmtNum(s.evictions)], ["device writes", fmtNum(s.device_writes)],
    ["write rate", fmtBytes(s.write_bytes_per_s) + "/s"], ["index", fmtBytes(s.index_bytes)],
    ["device reads", fmtNum(s.device_reads) + " (" + fmtNum(s.device_reads_async) + " asynchronous, " +
      fmtNum(s.device_reads_in_flight) + " in flight)"],
    ["read latency", fmtBuckets(s.read_latency_us, " us")],
    ["reads in flight at start", fmtBuckets(s.read_depth, "")]]);
  const list = $("#pending-list");
  list.replaceChildren();
  const lines = d.error ? [d.error] : (d.pending.length ? d.pending : ["provisioned as configured"]);
  for (const line of lines) {
    const li = document.createElement("li");
    li.textContent = line;
    list.appendChild(li);
  }
}

// ---- buckets ----

const BUCKET_COLUMNS = [["objects", fmtNum], ["object_bytes", fmtBytes], ["hits", fmtNum],
  ["misses", fmtNum], ["hit_ratio", (r) => (r === null ? "-" : pct(r))],
  ["bytes_out", fmtBytes], ["bytes_in", fmtBytes]];

async function loadBuckets() {
  const r = await api("GET", "/buckets");
  if (!r.ok) return;
  $("#buckets-message").textContent = r.data.message;
  $("#purge").classList.toggle("hidden", !r.data.enabled);
  const tbody = $("#buckets-table tbody");
  tbody.replaceChildren();
  for (const b of r.data.buckets) {
    const tr = document.createElement("tr");
    tr.dataset.name = b.name;
    cell(tr, b.name); cell(tr, b.kind);
    for (const [k, fmt] of BUCKET_COLUMNS) cell(tr, fmt(b[k]), k);
    tbody.appendChild(tr);
  }
  // Refreshed every 2 s: keep the operator's choice of bucket.
  const select = $("#purge-bucket");
  const chosen = select.value;
  select.replaceChildren(...r.data.buckets.map((b) => new Option(b.name, b.name)));
  if (r.data.buckets.some((b) => b.name === chosen)) select.value = chosen;
}

async function purgeBucket(ev) {
  ev.preventDefault();
  const bucket = $("#purge-bucket").value;
  const prefix = $("#purge-prefix").value;
  if (!bucket) return;
  const what = prefix ? "the objects under \"" + prefix + "\" in bucket " + bucket
                      : "every object in bucket " + bucket;
  if (!window.confirm("Purge drops " + what + ". Purge now?")) return;
  const r = await api("POST", "/buckets/" + encodeURIComponent(bucket) + "/purge", { prefix });
  const out = $("#purge-result");
  out.className = r.ok ? "ok" : "error";
  out.textContent = r.ok ? "purged " + r.data.purged + " objects from bucket " + r.data.bucket +
    (r.data.prefix ? " under prefix \"" + r.data.prefix + "\"" : "") : r.data.error;
  loadBuckets();
}

async function loadSwitch() {
  const r = await api("GET", "/switch");
  if (!r.ok) return;
  $("#switch-message").textContent = r.data.message;
  // One row per port, rule and function: its counters as "field value" pairs.
  const row = (o) => [o.name || "", Object.entries(o).filter(([k]) => k !== "name")
    .map(([k, v]) => `${k} ${v}`).join(", ")];
  fillRows($("#ports-table tbody"), r.data.ports.map(row));
  fillRows($("#rules-table tbody"), r.data.rules.map(row));
  fillRows($("#functions-table tbody"), r.data.functions.map(row));
}

// ---- config ----

async function loadConfig(force) {
  const r = await api("GET", "/config");
  if (!r.ok) return;
  $("#config-source").textContent = "Running: " + (r.data.source || "(built in)") +
    "; reloads " + r.data.reloads + ", refused " + r.data.refused +
    (r.data.last_error ? "; last refusal: " + r.data.last_error : "");
  if (force || !$("#config-text").value) $("#config-text").value = r.data.text || "";
}

function showProblems(result, okText) {
  const list = $("#config-errors");
  list.replaceChildren();
  for (const e of result.errors || []) {
    const li = document.createElement("li");
    li.textContent = (e.line ? "line " + e.line + ": " : "") + (e.path ? e.path + ": " : "") + e.message;
    list.appendChild(li);
  }
  const status = $("#config-status");
  status.textContent = result.error ? result.error : (result.ok ? okText : (result.message || "refused"));
  status.className = result.ok ? "ok" : "error";
}

async function validateConfig() {
  const r = await api("POST", "/config/validate", { text: $("#config-text").value });
  showProblems(r.data, "valid: this config would be accepted");
}

async function applyConfig() {
  const r = await api("POST", "/config/apply", { text: $("#config-text").value });
  showProblems(r.data, r.data.message + (r.data.changes && r.data.changes.length ? ": " + r.data.changes.join("; ") : ""));
  if (r.ok) loadConfig(false);
}

// ---- keys ----

async function lookupKey(ev) {
  if (ev) ev.preventDefault();
  const key = $("#key-input").value;
  if (!key) return;
  const r = await api("GET", "/keys/" + encodeURIComponent(key));
  const tbody = $("#key-result tbody");
  if (!r.ok) { fillRows(tbody, [["error", r.data.error]]); return; }
  const k = r.data;
  fillRows(tbody, [
    ["key", k.key], ["owner", k.owner ? k.owner.name + " " + k.owner.address + " (" + k.owner.state + ")" : "- (standalone)"],
    ["local tier", k.tier], ["size", k.size === null ? "-" : fmtBytes(k.size)],
    ["flags", k.flags === null ? "-" : String(k.flags)],
    ["TTL left", k.tier === "absent" ? "-" : (k.ttl_left_s === null ? "never expires" : k.ttl_left_s + " s")],
    ["cas", k.cas === null ? "-" : String(k.cas)]]);
}

async function deleteKey() {
  const key = $("#key-input").value;
  if (!key || !window.confirm("Delete " + key + "?")) return;
  const r = await api("DELETE", "/keys/" + encodeURIComponent(key));
  fillRows($("#key-result tbody"), [[r.ok ? (r.data.deleted ? "deleted" : "not found") : "error",
                                     r.ok ? r.data.reply : r.data.error]]);
}

// ---- events ----

async function loadEvents() {
  const r = await api("GET", "/events?limit=200");
  if (!r.ok) return;
  fillRows($("#events-table tbody"), r.data.events.slice().reverse().map((e) => [
    new Date(e.time * 1000).toLocaleTimeString(), e.kind, e.level, e.message]));
}

// ---- pages, login ----

const PAGES = { dashboard: loadDashboard, backends: loadBackends, storage: loadStorage,
                buckets: loadBuckets, switch: loadSwitch, config: loadConfig,
                keys: async () => {}, events: loadEvents };
const REFRESH = { backends: loadBackends, storage: loadStorage, buckets: loadBuckets,
                  events: loadEvents };

function banner(text) {
  const b = $("#banner");
  b.textContent = text || "";
  b.classList.toggle("hidden", !text);
}

function showPage(name) {
  if (!PAGES[name]) name = "dashboard";
  state.page = name;
  for (const s of document.querySelectorAll("section.page")) s.classList.toggle("hidden", s.id !== name);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.hash === "#" + name);
  PAGES[name]();
  clearInterval(state.timer);
  if (REFRESH[name]) state.timer = setInterval(REFRESH[name], 2000);
}

function showLogin() {
  state.page = "login";
  clearInterval(state.timer);
  for (const s of document.querySelectorAll("section.page")) s.classList.toggle("hidden", s.id !== "login");
  $("#password").focus();
}

async function start() {
  const r = await api("GET", "/session");
  state.session = r.data;
  state.csrf = r.data.csrf_token;
  $("#who").textContent = r.data.auth_required ? (r.data.authenticated ? "logged in" : "") : "no auth (loopback)";
  $("#logout-button").classList.toggle("hidden", !(r.data.auth_required && r.data.authenticated));
  if (r.data.auth_required && !r.data.authenticated) { showLogin(); return; }
  showPage(location.hash.slice(1));
}

async function login(ev) {
  ev.preventDefault();
  const r = await api("POST", "/login", { password: $("#password").value });
  if (!r.ok) { $("#login-error").textContent = r.data.error; return; }
  $("#login-error").textContent = "";
  $("#password").value = "";
  await start();
}

window.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout-button").addEventListener("click", async () => { await api("POST", "/logout"); location.reload(); });
  $("#flush-button").addEventListener("click", flush);
  $("#validate-button").addEventListener("click", validateConfig);
  $("#apply-button").addEventListener("click", applyConfig);
  $("#reset-button").addEventListener("click", () => loadConfig(true));
  $("#config-file").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (f) $("#config-text").value = await f.text();
  });
  $("#key-form").addEventListener("submit", lookupKey);
  $("#key-delete").addEventListener("click", deleteKey);
  $("#purge-form").addEventListener("submit", purgeBucket);
  window.addEventListener("hashchange", () => { if (state.page !== "login") showPage(location.hash.slice(1)); });
  start();
});
