// The Backfills page's script; include/backfill_controller/server/ui.py inlines it into backfills.html, whose
// #phases block holds the phases (JSON) the filter offers and #keys the keys of a request.
"use strict";
const STATES = [
  ["success", "success"], ["failed", "failed"], ["running", "running"], ["queued", "queued"],
  ["pending", "not started yet"], ["skipped", "skipped"], ["cancelled", "cancelled"],
  ["trigger_failed", "trigger failed"], ["planned", "planned (dry run)"],
];
const PHASES = JSON.parse(document.getElementById("phases").textContent);
// Every key of a request, as the trigger form's Params (JSON Schema with title and description).
const KEYS = JSON.parse(document.getElementById("keys").textContent);
// Keys with their own field in the New backfill form; the others are under "More options" (a
// dry run is the Preview button).
const FORM_KEYS = new Set(["dag_id", "start_date", "end_date", "dates", "reprocess", "reason", "dry_run"]);
const HEADINGS = ["Backfill", "Target", "Window", "Who", "Reason", "Progress", "Time"];
const PAGE_SIZE = 50;
const REFRESH_MS = 5000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const IN_FLIGHT = new Set(["queued", "running"]);
let offset = 0;
let timer = null;
const filters = { dag_id: "", state: "" };
// Backfills the user opened: their calendars are drawn from their detail (api/backfills/{run_id}),
// fetched when opened and again on each refresh while their controller run is in flight.
const opened = new Set();
const details = new Map();
let grids = new Map();
let shown = null;  // the list as last rendered

// fetch, asking again while the api-server answers 503 with Retry-After (it is busy planning other
// requests and changed nothing for this one), up to RETRIES times.
const RETRIES = 4;
async function call(url, options) {
  for (let attempt = 1; ; attempt++) {
    const resp = await fetch(url, options);
    const header = resp.headers.get("Retry-After");
    const wait = header === null ? NaN : Number(header);
    if (resp.status !== 503 || !(wait >= 0) || attempt > RETRIES) return resp;
    await new Promise((done) => setTimeout(done, Math.min(wait, 60) * 1000));
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The Airflow UI lives one level above this page (<base>/backfill-controller/ui).
function uiUrl(path) { return new URL("../" + path, window.location.href).href; }
function runUrl(dagId, runId) {
  return uiUrl("dags/" + encodeURIComponent(dagId) + "/runs/" + encodeURIComponent(runId));
}

// Inside the Airflow UI this page is a sandboxed iframe that may not navigate the top window, but
// it is same-origin: move the UI's router to the run page instead (a history entry + popstate).
function openInUi(event) {
  const link = event.currentTarget;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  try {
    const top = window.top;
    if (top === window || top.location.origin !== window.location.origin) return;
    event.preventDefault();
    const url = new URL(link.href);
    top.history.pushState(null, "", url.pathname + url.search + url.hash);
    top.dispatchEvent(new top.PopStateEvent("popstate", { state: null }));
  } catch (err) {
    // not allowed to touch the parent: fall back to the plain link (target=_top)
  }
}

function link(href, attrs, ...children) {
  const node = el("a", Object.assign({ href: href, target: "_top" }, attrs || {}), ...children);
  node.addEventListener("click", openInUi);
  return node;
}

function day(iso) { return iso.slice(0, 10); }
function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : ""; }

function duration(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return Math.floor(whole / 3600) + ":" + pad(Math.floor(whole / 60) % 60) + ":" + pad(whole % 60);
}

function windowText(b) {
  const w = b.window || {};
  const first = w.first_date ? day(w.first_date) : null;
  const last = w.last_date ? day(w.last_date) : null;
  if (w.dates) {
    const span = first ? " (" + first + (first !== last ? " \u2026 " + last : "") + ")" : "";
    return w.dates + " explicit date" + (w.dates === 1 ? "" : "s") + span;
  }
  if (w.start_date || w.end_date) {
    return day(w.start_date || "?") + " \u2192 " + day(w.end_date || "?");
  }
  return "";
}

function progress(b) {
  const p = b.progress || { counts: {} };
  const c = p.counts || {};
  const cell = el("td");
  if (!b.visible || !b.planned) {
    const why = b.error ? "refused" : !b.planned ? "planning\u2026" : "no access to the target";
    cell.append(el("span", { class: "muted", text: why }));
    return cell;
  }
  const bar = el("div", { class: "bar", title: JSON.stringify(c) });
  for (const [state] of STATES) {
    if (!c[state]) continue;
    const width = (100 * c[state]) / p.dates;
    bar.append(el("span", { style: "width:" + width + "%;background:var(--" + state + ")" }));
  }
  const parts = [];
  if (b.dry_run) parts.push(p.dates + " dates planned");
  else parts.push(p.finished + "/" + p.acting + " done");
  for (const [state, label] of STATES) {
    if (c[state] && state !== "planned") parts.push(c[state] + " " + label);
  }
  cell.append(bar, el("div", { class: "note", text: parts.join(" \u00b7 ") }));
  return cell;
}

function square(b, c) {
  const time = c.logical_date.slice(11, 19) !== "00:00:00" ? " " + c.logical_date.slice(11, 16) : "";
  const title = day(c.logical_date) + time + " \u00b7 " + c.state + " \u00b7 " + c.action
    + (c.why ? " (" + c.why + ")" : "") + "\n" + c.run_id;
  const attrs = { class: "cell", "data-logical-date": c.logical_date, "data-state": c.state,
                  "data-run-id": c.run_id, title: title, "aria-label": title };
  return c.run_exists ? link(runUrl(b.target_dag_id, c.run_id), attrs) : el("span", attrs);
}

// One block per month: a Monday-first calendar when each date is on its own day (daily and
// coarser schedules), otherwise the month's dates in order (several runs a day).
function calendar(b) {
  const months = new Map();
  for (const c of b.cells) {
    const key = c.logical_date.slice(0, 7);
    if (!months.has(key)) months.set(key, []);
    months.get(key).push(c);
  }
  const root = el("div", { class: "calendar", "data-run-id": b.run_id });
  for (const [key, cells] of months) {
    const [year, month] = key.split("-").map(Number);
    const byDay = new Map(cells.map((c) => [Number(c.logical_date.slice(8, 10)), c]));
    const block = el("div", { class: "month" }, el("h3", { text: MONTHS[month - 1] + " " + year }));
    if (byDay.size === cells.length) {
      const grid = el("div", { class: "days" });
      for (const d of ["M", "T", "W", "T", "F", "S", "S"]) grid.append(el("span", { class: "dow", text: d }));
      const first = (new Date(Date.UTC(year, month - 1, 1)).getUTCDay() + 6) % 7;
      const length = new Date(Date.UTC(year, month, 0)).getUTCDate();
      for (let i = 0; i < first; i++) grid.append(el("span"));
      for (let d = 1; d <= length; d++) {
        const c = byDay.get(d);
        const date = key + "-" + String(d).padStart(2, "0");
        grid.append(c ? square(b, c) : el("span", { class: "blank", title: date }));
      }
      block.append(grid);
    } else {
      block.append(el("div", { class: "days seq" }, cells.map((c) => square(b, c))));
    }
    root.append(block);
  }
  if (b.cells_total > b.cells.length) {
    root.append(el("p", { class: "note", text: "The first " + b.cells.length.toLocaleString() + " of "
      + b.cells_total.toLocaleString() + " dates." }));
  }
  return root;
}

function etaNote(b) {
  const eta = b.eta;
  if (!eta || !eta.end) return null;
  const basis = eta.basis === "recent_runs"
    ? "estimated from the target's recent runs (none of this backfill's has finished yet)"
    : "estimated from this backfill's finished runs and its pace so far";
  return el("div", { class: "eta", title: basis,
                     text: "ETA " + when(eta.end) + " (" + duration(eta.remaining_seconds) + " left)" });
}

function hasDates(b) { return Boolean(b.visible && b.planned && b.progress && b.progress.dates); }

function toggle(b) {
  if (!hasDates(b)) return null;
  const open = opened.has(b.run_id);
  const button = el("button", { type: "button", class: "dates", "aria-expanded": String(open),
                                text: (open ? "\u25be" : "\u25b8") + " dates" });
  button.addEventListener("click", () => {
    if (opened.delete(b.run_id)) details.delete(b.run_id);
    else opened.add(b.run_id);
    if (shown) render(shown);
  });
  return button;
}

const CONTROLS = { pause: "Pause", resume: "Resume", cancel: "Cancel", rerun_failed: "Re-run failed" };

// The controls the signed-in user may apply now (the server says which: b.controls).
function controls(b) {
  const shownControls = (b.controls || []).filter((c) => c in CONTROLS);
  if (!shownControls.length) return null;
  return el("div", { class: "controls" }, shownControls.map((c) => {
    const button = el("button", { type: "button", class: c, "data-control": c, text: CONTROLS[c] });
    button.addEventListener("click", () => applyControl(b, c, button));
    return button;
  }));
}

// A control is a JSON POST (a page of another site cannot send one with the UI's cookie).
async function applyControl(b, control, button) {
  if (control === "cancel" && !window.confirm("Cancel backfill " + b.run_id + "? Nothing new starts, "
      + "its queued runs are marked failed; runs already running finish.")) return;
  button.disabled = true;
  let message;
  try {
    const resp = await call("api/backfills/" + encodeURIComponent(b.run_id) + "/" + control, {
      method: "POST", credentials: "same-origin", body: "{}",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = body.detail || {};
      message = CONTROLS[control] + " refused (HTTP " + resp.status + "): " + (detail.message || detail);
    } else if (control === "rerun_failed") {
      message = "started " + body.dag_run_id + ": a backfill of the " + body.dates + " failed dates";
    } else {
      message = "backfill " + b.run_id + ": " + body.phase;
    }
  } catch (err) {
    message = CONTROLS[control] + " failed: " + err.message;
  }
  document.getElementById("action-status").textContent = message;
  details.delete(b.run_id);
  load();
}

function history(detail) {
  if (!detail.history || !detail.history.length) return null;
  const line = (h) => when(h.at) + " \u00b7 " + h.action + " by " + (h.by || "?")
    + (h.detail ? " \u2192 " + h.detail : "");
  return el("ul", { class: "history" }, detail.history.map((h) => el("li", { text: line(h) })));
}

function row(data, b) {
  const controller = link(runUrl(data.controller_dag_id, b.run_id), { class: "run" },
    el("code", { text: b.run_id }));
  const target = b.target_dag_id
    ? link(uiUrl("dags/" + encodeURIComponent(b.target_dag_id)), { class: "target" }, b.target_dag_id)
    : "?";
  const attrs = { class: "backfill", "data-run-id": b.run_id, "data-state": b.state, "data-phase": b.phase };
  return el("tr", attrs,
    el("td", {},
      el("span", { class: "badge " + b.phase, text: b.phase, title: "controller run: " + b.state }),
      b.dry_run ? el("span", { class: "tag", text: "dry run" }) : null,
      b.paused && b.phase !== "paused" ? el("span", { class: "tag", text: "paused" }) : null,
      el("div", { class: "note" }, controller), toggle(b), controls(b)),
    el("td", {}, target,
      b.reprocess ? el("div", { class: "note", text: "reprocess: " + b.reprocess }) : null),
    el("td", { class: "window", text: windowText(b) }),
    el("td", { text: b.triggered_by || "" }),
    el("td", {}, b.reason ? el("span", { text: b.reason }) : el("span", { class: "muted", text: "\u2014" }),
      b.error ? el("div", { class: "error", text: b.error }) : null),
    progress(b),
    el("td", { class: "note time" }, el("div", { text: "start " + when(b.start_date || b.queued_at) }),
      b.end_date ? el("div", { text: "end " + when(b.end_date) }) : null, etaNote(b)),
  );
}

// The calendar of an opened backfill: the last detail drawn at once, then a fresh one if needed.
async function openDetail(b) {
  const known = details.get(b.run_id);
  if (known && !IN_FLIGHT.has(b.state) && known.state === b.state) return;
  let detail;
  try {
    const resp = await call("api/backfills/" + encodeURIComponent(b.run_id),
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    detail = await resp.json();
  } catch (err) {
    const cell = grids.get(b.run_id);
    const why = "could not load its dates: " + err.message;
    if (cell) cell.replaceChildren(el("span", { class: "error", text: why }));
    return;
  }
  details.set(b.run_id, detail);
  const cell = grids.get(b.run_id);
  if (cell && opened.has(b.run_id)) cell.replaceChildren(calendar(detail), history(detail) || "");
}

function render(data) {
  shown = data;
  const rows = [];
  grids = new Map();
  for (const b of data.backfills) {
    rows.push(row(data, b));
    if (!opened.has(b.run_id) || !hasDates(b)) continue;
    const known = details.get(b.run_id);
    const cell = el("td", { colspan: "7" },
      known ? [calendar(known), history(known)]
        : el("span", { class: "muted", text: "loading its dates\u2026" }));
    grids.set(b.run_id, cell);
    rows.push(el("tr", { class: "grid-row", "data-run-id": b.run_id }, cell));
    openDetail(b);
  }
  const table = el("table", {},
    el("thead", {}, el("tr", {}, HEADINGS.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
  const content = document.getElementById("content");
  const filtered = filters.dag_id || filters.state;
  const empty = el("p", { class: "muted", text: filtered
    ? "No backfill matches these filters." : "No backfills yet: trigger backfill_controller." });
  content.replaceChildren(data.backfills.length ? table : empty);
  const pages = document.getElementById("pages");
  pages.replaceChildren();
  if (offset > 0) pages.append(el("a", { href: "#", id: "newer", text: "\u2190 newer" }));
  if (offset + data.backfills.length < data.total) {
    pages.append(el("a", { href: "#", id: "older", text: "older \u2192" }));
  }
  for (const a of pages.querySelectorAll("a")) {
    a.addEventListener("click", (e) => {
      e.preventDefault();
      offset = Math.max(0, offset + (a.id === "older" ? PAGE_SIZE : -PAGE_SIZE));
      load();
    });
  }
  const last = offset + data.backfills.length;
  const range = data.backfills.length ? " \u00b7 " + (offset + 1) + "\u2013" + last : "";
  document.getElementById("status").textContent = data.total + " backfill" + (data.total === 1 ? "" : "s")
    + (filtered ? " matching" : "") + range + " \u00b7 updated " + new Date().toLocaleTimeString()
    + (data.active ? " \u00b7 refreshing every 5 s" : "");
  document.body.dataset.loaded = "true";
}

async function load() {
  clearTimeout(timer);
  let active = false;
  try {
    const query = new URLSearchParams({ limit: PAGE_SIZE, offset: offset });
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    const resp = await call("api/backfills?" + query,
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401 || resp.status === 403) {
      throw new Error("not signed in, or no read access to backfill_controller (HTTP " + resp.status + ")");
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const data = await resp.json();
    render(data);
    active = data.active;
  } catch (err) {
    document.getElementById("status").textContent = "could not load backfills: " + err.message;
    active = true;  // try again
  }
  if (active) timer = setTimeout(load, REFRESH_MS);
}

// The front door checks the request for the signed-in user: a preview is its dry run (nothing is
// created), Start creates the backfill. Refusals list every problem, or the missing right.
function keyType(schema) {
  return Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
}

// One field of "More options", typed after the key's schema; empty means the key's default.
function keyField(name, schema) {
  const kind = keyType(schema);
  const attrs = { name: name, "data-type": kind };
  let input;
  if (kind === "boolean") {
    input = el("input", { ...attrs, type: "checkbox", value: "true" });
  } else if (schema.enum || (schema.items && schema.items.enum)) {
    const choices = schema.enum || schema.items.enum;
    input = el("select", attrs, el("option", { value: "", text: "default" }),
      choices.map((c) => el("option", { value: c, text: c })));
  } else if (kind === "object") {
    input = el("textarea", { ...attrs, rows: "1", placeholder: "{}" });
  } else {
    input = el("input", { ...attrs, type: kind === "integer" ? "number" : "text",
      min: schema.minimum, max: schema.maximum, placeholder: kind === "array" ? "a, b, ..." : null });
  }
  return el("label", { title: schema.description || "" }, schema.title || name, input);
}

// The request the form describes: each field given, as its key's type.
function formConf(form) {
  const conf = {};
  for (const field of form.elements) {
    if (!field.name || field.name === "action") continue;
    const kind = field.dataset.type;
    if (kind === "boolean") {
      if (field.checked) conf[field.name] = true;
      continue;
    }
    const value = field.value.trim();
    if (!value) continue;
    if (kind === "integer") conf[field.name] = Number(value);
    else if (kind === "array") conf[field.name] = value.split(",").map((v) => v.trim()).filter(Boolean);
    else if (kind === "object") {
      try { conf[field.name] = JSON.parse(value); } catch (e) { conf[field.name] = value; }
    } else conf[field.name] = value;
  }
  return conf;
}

async function loadTargets() {
  const resp = await call("api/backfillable_dags", { credentials: "same-origin" });
  if (!resp.ok) return;
  const body = await resp.json();
  document.getElementById("backfillable").replaceChildren(
    ...body.dag_ids.map((id) => el("option", { value: id })));
}

async function submitNew(event) {
  event.preventDefault();
  const conf = formConf(event.currentTarget);
  const preview = event.submitter && event.submitter.value === "preview";
  const out = document.getElementById("preview");
  out.replaceChildren(el("span", { class: "muted", text: preview ? "checking…" : "starting…" }));
  const resp = await call(preview ? "api/backfills/dry_run" : "api/backfills", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(conf),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const detail = body.detail || {};
    const errors = (detail.errors || [])
      .map((e) => e.field + ": " + e.problem + " (accepted: " + e.accepted + ")");
    const why = errors.length ? errors.join("\n") : detail.message || resp.statusText;
    out.replaceChildren(el("div", { class: "error", id: "refusal",
      text: "refused (HTTP " + resp.status + "): " + why }));
    return;
  }
  if (preview) {
    const b = { run_id: "preview", target_dag_id: body.dag_id, cells: body.dates.map((d) => ({
      logical_date: d.logical_date, state: d.state, action: d.action,
      why: d.why, run_id: d.run_id, run_exists: false })) };
    const counts = Object.entries(body.counts).filter(([, v]) => v).map(([k, v]) => v + " " + k).join(" · ");
    out.replaceChildren(el("div", { class: "note", id: "preview-counts", text: counts }), calendar(b));
  } else {
    out.replaceChildren(el("div", { class: "note", id: "started", text: "started " + body.dag_run_id }));
    offset = 0;
    load();
  }
}

function applyFilters(event) {
  if (event) event.preventDefault();
  filters.dag_id = document.getElementById("filter-dag").value.trim();
  filters.state = document.getElementById("filter-state").value;
  offset = 0;
  load();
}

document.getElementById("new-form").addEventListener("submit", submitNew);
document.getElementById("more-keys").append(...Object.entries(KEYS)
  .filter(([name]) => !FORM_KEYS.has(name)).map(([name, schema]) => keyField(name, schema)));
loadTargets();
document.getElementById("filter-state").append(...PHASES.map((p) => el("option", { value: p, text: p })));
document.getElementById("filters").addEventListener("submit", applyFilters);
document.getElementById("filter-dag").addEventListener("change", applyFilters);
document.getElementById("filter-state").addEventListener("change", applyFilters);
document.getElementById("legend").append(...STATES.map(([state, label]) =>
  el("li", {}, el("span", { class: "swatch", style: "background:var(--" + state + ")" }), label)));
load();
