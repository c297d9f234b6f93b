// The console page: draws the topology the server rendered, shows a hovered workload's
// routes as the running services publish them, and lists authorisation decisions as they
// stream in. Every value from the server is inserted as text, never as markup.
"use strict";

const MAX_ROWS = 500;
let info = null;
let routes = {};
const rows = []; // newest first: {event, tr}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

async function loadDiagram() {
  const r = await fetch("/topology.svg", {credentials: "same-origin"});
  const text = await r.text();
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = document.importNode(doc.documentElement, true);
  const box = document.getElementById("diagram");
  box.replaceChildren(svg);
  for (const g of svg.querySelectorAll("g.workload")) {
    const show = () => showWorkload(g.getAttribute("data-workload"), g);
    g.addEventListener("mouseenter", show);
    g.addEventListener("focus", show);
    g.addEventListener("click", show);
  }
  document.body.dataset.diagram = "ready";
}

async function loadRoutes() {
  try { routes = await getJSON("/api/routes"); } catch (e) { routes = {}; }
}

function showWorkload(name, g) {
  for (const s of document.querySelectorAll("#diagram g.workload.selected")) s.classList.remove("selected");
  if (g) g.classList.add("selected");
  const w = (info && info.workloads || []).find(x => x.name === name);
  const panel = document.getElementById("workload-detail");
  panel.dataset.workload = name;
  const parts = [el("h3", {}, name), el("div", {}, el("code", {}, w ? w.spiffe_id : ""))];
  if (w) {
    parts.push(el("p", {}, "may call: ", w.calls.length ? w.calls.join(", ") : "nothing"));
    parts.push(el("p", {}, "admits calls from: ", w.callers.length ? w.callers.join(", ") : "nobody"));
  }
  const wr = routes[name];
  if (!wr) {
    parts.push(el("p", {class: "hint"}, "loading routes…"));
    loadRoutes().then(() => { if (panel.dataset.workload === name && routes[name]) showWorkload(name, g); });
  } else if (wr.error) {
    parts.push(el("p", {class: "hint"}, "routes: " + wr.error));
  } else {
    const tbody = el("tbody");
    for (const r of wr.routes) {
      tbody.append(el("tr", {class: "route"},
        el("td", {}, r.method), el("td", {}, el("code", {}, r.route)),
        el("td", {}, r.permission ? el("span", {class: "perm"}, r.permission) : "—"),
        el("td", {}, r.from && r.from.length ? "only " + r.from.join(", ") : "")));
    }
    parts.push(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "method"), el("th", {}, "route"), el("th", {}, "permission"), el("th", {}, "callers"))), tbody));
  }
  panel.replaceChildren(...parts);
}

function fillFilters() {
  const t = document.getElementById("f-tenant");
  for (const name of info.tenants) t.append(el("option", {value: name}, name));
  const s = document.getElementById("f-service");
  for (const w of info.workloads) if (w.tenant) s.append(el("option", {value: w.name}, w.name));
  for (const id of ["f-tenant", "f-service", "f-result", "f-text"]) {
    document.getElementById(id).addEventListener("input", applyFilters);
  }
  document.getElementById("filters").addEventListener("submit", e => e.preventDefault());
}

function matches(e) {
  const tenant = document.getElementById("f-tenant").value;
  const service = document.getElementById("f-service").value;
  const result = document.getElementById("f-result").value;
  const text = document.getElementById("f-text").value.trim().toLowerCase();
  if (tenant && e.tenant !== tenant) return false;
  if (service && e.service !== service) return false;
  if (result && (result === "allow") !== e.allow) return false;
  if (text) {
    const hay = [e.user, e.user_id, e.caller, e.caller_id, e.action, e.route, e.method, e.decision_id, e.trace_id, e.reason].join(" ").toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

function applyFilters() {
  let shown = 0, denies = 0;
  for (const r of rows) {
    const ok = matches(r.event);
    r.tr.hidden = !ok;
    if (ok) { shown++; if (!r.event.allow) denies++; }
  }
  document.getElementById("counts").textContent = shown + " shown (" + denies + " denied) of " + rows.length;
}

function flashWorkload(e) {
  const g = document.querySelector('#diagram g.workload[data-workload="' + CSS.escape(e.service) + '"]');
  if (!g) return;
  const cls = e.allow ? "flash-allow" : "flash-deny";
  g.classList.add(cls);
  setTimeout(() => g.classList.remove(cls), 1200);
}

function addEvent(e, live) {
  const time = new Date(e.time);
  // Long IDs are shortened on screen and kept whole in the title, the data attributes and
  // the search filter.
  const short = (s, n) => s.length > n ? s.slice(0, n) + "…" : s;
  const traceText = short(e.trace_id || "", 16);
  const trace = e.trace_id
    ? (e.trace_url ? el("a", {href: e.trace_url, target: "_blank", rel: "noopener noreferrer", title: e.trace_id}, traceText) : el("span", {title: e.trace_id}, traceText))
    : "";
  const at = e.user.lastIndexOf("@");
  const userText = at > 0 ? short(e.user.slice(0, at), 8) + e.user.slice(at) : e.user;
  const tr = el("tr", {class: "decision " + (e.allow ? "allow" : "deny") + (live ? " new" : ""),
                       "data-decision-id": e.decision_id, "data-result": e.allow ? "allow" : "deny",
                       "data-user-id": e.user_id, "data-service": e.service},
    el("td", {title: e.time}, time.toLocaleTimeString([], {hour12: false}) + "." + String(time.getMilliseconds()).padStart(3, "0")),
    el("td", {}, e.tenant),
    el("td", {}, e.service),
    el("td", {title: e.caller_id}, e.caller || "—"),
    el("td", {title: e.user_id}, userText || "—"),
    el("td", {}, e.action || "—"),
    el("td", {}, (e.method + " " + e.route).trim()),
    el("td", {class: "result"}, el("span", {class: "badge"}, e.allow ? "allow" : "DENY")),
    el("td", {}, e.reason + (e.status ? " (" + e.status + ")" : "")),
    el("td", {class: "id"}, e.decision_id),
    el("td", {class: "id"}, trace));
  const tbody = document.getElementById("stream");
  tbody.prepend(tr);
  rows.unshift({event: e, tr});
  tr.hidden = !matches(e);
  while (rows.length > MAX_ROWS) rows.pop().tr.remove();
  if (live) flashWorkload(e);
}

function connect() {
  const status = document.getElementById("status");
  const es = new EventSource("/api/events");
  let live = false;
  es.addEventListener("open", () => { status.textContent = "live"; status.className = "status live"; });
  es.addEventListener("decision", m => { addEvent(JSON.parse(m.data), live); applyFilters(); });
  // The server sends a comment after the backlog; EventSource does not surface comments,
  // so the page counts everything after the first second as live for highlighting only.
  setTimeout(() => { live = true; }, 1000);
  es.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = "status down"; });
  document.body.dataset.stream = "connected";
}

async function main() {
  info = await getJSON("/api/info");
  if (info.matrix_written) {
    document.getElementById("matrix-when").textContent = "as the e2e suite last wrote it (" + info.matrix_written + "); each refusal names the layer that refused";
  }
  fillFilters();
  await loadDiagram();
  connect();
  loadRoutes();
}

main().catch(err => {
  document.getElementById("status").textContent = "error: " + err.message;
  document.getElementById("status").className = "status down";
});
