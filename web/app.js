// mailport's web UI (issue 17): plain JavaScript, no build step, no framework.
// Every URL is relative to the page, so the UI works under a path prefix.
// Text from messages is only ever put in the page as text (textContent),
// never as HTML; a message's HTML is shown in a sandboxed iframe only.
"use strict";

const PAGE = 50;
const TOKEN_KEY = "mailport.token";
const $ = (id) => document.getElementById(id);

const ui = {
  offset: 0,
  total: 0,
  q: "",
  items: [],        // the entries of the page shown
  selected: -1,     // index into items
  openId: null,
  fresh: new Set(), // arrived live, not opened yet: the count in the title
  parts: new Map(), // id -> attachments (from /messages/{id}), for the list's mark
  source: null,     // the EventSource
  gone: new Set(),  // deleted ids already taken off (our DELETE, then its event)
};

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class Unauthorized extends Error {}

// fetch() with the token; a 401 asks for the token and fails this call.
async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const r = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  if (r.status === 401) {
    askToken(token() !== "");
    throw new Unauthorized("unauthorized");
  }
  return r;
}

async function apiJSON(path) {
  const r = await api(path);
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function askToken(wrong) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-error").hidden = !wrong;
  $("login").hidden = false;
  $("token").focus();
}

// ---- the list ----------------------------------------------------------------

function fmtSize(n) {
  if (n == null) return "";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d)) return s;
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString() : d.toLocaleString();
}

function td(text, cls) {
  const c = document.createElement("td");
  c.textContent = text == null ? "" : String(text);
  if (cls) c.className = cls;
  c.title = c.textContent;
  return c;
}

function row(e, i) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.className = "state-" + (e.state || "new");
  if (ui.fresh.has(e.id)) tr.classList.add("fresh");
  if (e.id === ui.openId) tr.classList.add("selected");
  const att = ui.parts.get(e.id);
  tr.append(td(att && att.length ? "\u{1F4CE}" : "", "att"),
    td(e.mail_from === "" ? "<>" : e.mail_from, "from"),
    td((e.rcpt_to || []).join(", "), "to"),
    td(e.subject == null ? "(no subject)" : e.subject, "subject"),
    td(fmtTime(e.received_at), "time"),
    td(fmtSize(e.size), "num size"));
  if (att && att.length) tr.cells[0].title = att.length + " attachment(s)";
  tr.addEventListener("click", () => select(i, true));
  return tr;
}

function render() {
  const body = $("rows");
  body.replaceChildren(...ui.items.map(row));
  $("empty").hidden = ui.items.length > 0;
  $("total").textContent = ui.total + (ui.total === 1 ? " message" : " messages");
  const last = Math.min(ui.offset + ui.items.length, ui.total);
  $("page").textContent = ui.total ? (ui.offset + 1) + "\u2013" + last : "";
  $("newer").disabled = ui.offset === 0;
  $("older").disabled = ui.offset + ui.items.length >= ui.total;
  document.title = (ui.fresh.size ? "(" + ui.fresh.size + ") " : "") + "mailport";
  markAttachments();
}

async function load() {
  let url = "messages?limit=" + PAGE + "&offset=" + ui.offset;
  if (ui.q) url += "&q=" + encodeURIComponent(ui.q);
  try {
    const v = await apiJSON(url);
    ui.total = v.total;
    ui.items = v.messages || [];
    if (ui.items.length === 0 && ui.offset > 0 && ui.total > 0) {
      ui.offset = Math.max(0, ui.offset - PAGE);
      return load();
    }
    ui.selected = ui.items.findIndex((e) => e.id === ui.openId);
    render();
    connect();
  } catch (e) {
    if (!(e instanceof Unauthorized)) console.warn(e.message);
  }
}

// The list has no MIME details: fetch them for the rows shown, a few at a
// time, once per message, for the attachment mark.
let marking = false;
async function markAttachments() {
  if (marking) return;
  marking = true;
  try {
    for (const e of ui.items.slice()) {
      if (ui.parts.has(e.id)) continue;
      let att = [];
      try {
        const m = await apiJSON("messages/" + encodeURIComponent(e.id));
        att = attachmentsOf(m);
      } catch (err) {
        if (err instanceof Unauthorized) break;
      }
      ui.parts.set(e.id, att);
      const tr = document.querySelector('#rows tr[data-id="' + CSS.escape(e.id) + '"]');
      if (tr && att.length) {
        tr.cells[0].textContent = "\u{1F4CE}";
        tr.cells[0].title = att.length + " attachment(s)";
      }
    }
  } finally {
    marking = false;
  }
}

function attachmentsOf(m) {
  const p = m && m.parts;
  if (!p || !Array.isArray(p.attachments)) return [];
  return p.attachments.filter((a) => a.disposition !== "inline" || !a.content_id);
}

function select(i, open) {
  if (i < 0 || i >= ui.items.length) return;
  ui.selected = i;
  for (const tr of $("rows").children) tr.classList.toggle("selected", tr.dataset.id === ui.items[i].id);
  const tr = $("rows").children[i];
  if (tr) tr.scrollIntoView({ block: "nearest" });
  if (open) show(ui.items[i].id);
}

// ---- live updates (GET /events) ------------------------------------------------

function connect() {
  if (ui.source) return;
  // EventSource sends no headers: the token goes in the query, on /events only.
  const url = "events" + (token() ? "?token=" + encodeURIComponent(token()) : "");
  const es = new EventSource(url);
  ui.source = es;
  let dropped = false;
  es.addEventListener("open", () => {
    $("live").textContent = "live";
    $("live").className = "live on";
    if (dropped) load(); // events may have been missed meanwhile
    dropped = false;
  });
  es.addEventListener("error", () => {
    $("live").textContent = "offline";
    $("live").className = "live off";
    dropped = true;
  });
  es.addEventListener("stored", (ev) => onStored(JSON.parse(ev.data)));
  es.addEventListener("state", (ev) => onState(JSON.parse(ev.data)));
  es.addEventListener("deleted", (ev) => onDeleted(JSON.parse(ev.data)));
}

function onStored(e) {
  if (ui.items.some((x) => x.id === e.id)) return;
  ui.total++;
  ui.fresh.add(e.id);
  // A new message is the newest: it belongs on the first page, unless a search
  // is on (the server decides what matches: reload that page).
  if (ui.q) { load(); return; }
  if (ui.offset === 0) {
    ui.items.unshift(e);
    if (ui.items.length > PAGE) ui.items.pop();
    if (ui.selected >= 0) ui.selected++;
  } else {
    ui.offset++; // the page shown moved one older
  }
  render();
}

function onState(e) {
  const i = ui.items.findIndex((x) => x.id === e.id);
  if (i < 0) return;
  ui.items[i] = Object.assign({}, ui.items[i], e);
  render();
}

function onDeleted(e) {
  if (ui.gone.has(e.id)) return;
  if (ui.gone.size > 1000) ui.gone.clear();
  ui.gone.add(e.id);
  const i = ui.items.findIndex((x) => x.id === e.id);
  ui.fresh.delete(e.id);
  if (e.id === ui.openId) closeView();
  if (i < 0) {
    // Not on this page: the count still changes (and the page may shift).
    ui.total = Math.max(0, ui.total - 1);
    render();
    return;
  }
  ui.items.splice(i, 1);
  ui.total = Math.max(0, ui.total - 1);
  if (ui.selected > i) ui.selected--;
  else if (ui.selected === i) ui.selected = Math.min(i, ui.items.length - 1);
  render();
  // Fill the page up from the next one.
  if (ui.offset + ui.items.length < ui.total) load();
}

// ---- one message -----------------------------------------------------------------

function setTab(name) {
  for (const b of document.querySelectorAll("#tabs button"))
    b.classList.toggle("active", b.dataset.tab === name);
  for (const t of document.querySelectorAll(".tab"))
    t.classList.toggle("active", t.id === "tab-" + name);
  if (name === "raw" && ui.openId && !$("tab-raw").dataset.loaded) loadRaw(ui.openId);
}

async function loadRaw(id) {
  try {
    const r = await api("messages/" + encodeURIComponent(id) + "/raw");
    const text = r.ok ? await r.text() : "HTTP " + r.status;
    if (ui.openId !== id) return;
    $("tab-raw").textContent = text;
    $("tab-raw").dataset.loaded = "1";
  } catch (e) { /* 401: the token form is up */ }
}

function meta(dl, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value == null ? "" : String(value);
  dl.append(dt, dd);
}

async function show(id) {
  let m;
  try {
    m = await apiJSON("messages/" + encodeURIComponent(id));
  } catch (e) {
    return;
  }
  ui.openId = id;
  if (ui.fresh.delete(id)) render();
  const base = "messages/" + encodeURIComponent(id);
  $("view").hidden = false;
  $("v-subject").textContent = m.subject == null ? "(no subject)" : m.subject;
  const dl = $("v-meta");
  dl.replaceChildren();
  meta(dl, "From", m.mail_from === "" ? "<>" : m.mail_from);
  meta(dl, "To", (m.rcpt_to || []).join(", "));
  meta(dl, "Received", fmtTime(m.received_at) + (m.client ? " from " + m.client.address : ""));
  meta(dl, "Size", fmtSize(m.size));
  meta(dl, "State", m.state);
  meta(dl, "Id", m.id);

  const tb = $("tab-headers").tBodies[0];
  tb.replaceChildren(...(m.headers || []).map((h) => {
    const tr = document.createElement("tr");
    tr.append(td(h.name), td(h.value));
    return tr;
  }));

  const parts = m.parts || null;
  $("tab-text").textContent = parts ? (parts.text || "") : "(no text part information)";
  $("tab-raw").textContent = "";
  delete $("tab-raw").dataset.loaded;

  const att = attachmentsOf(m);
  ui.parts.set(id, att);
  const box = $("v-attachments");
  box.replaceChildren();
  for (const a of att) {
    const link = document.createElement("a");
    link.href = base + "/parts/" + encodeURIComponent(a.part);
    link.className = "attachment";
    link.textContent = (a.filename || "part " + a.part) + " (" + fmtSize(a.size) + ")";
    link.addEventListener("click", (ev) => { ev.preventDefault(); download(link.href, a.filename || "part-" + a.part); });
    box.append(link);
  }

  const frame = $("v-html");
  const htmlTab = document.querySelector('#tabs button[data-tab="html"]');
  if (parts && parts.html_available) {
    htmlTab.disabled = false;
    if (token()) {
      // An iframe cannot send the token: fetch the HTML and show it from
      // memory, still sandboxed, with the same policy the server would send.
      const r = await api(base + "/html");
      const html = r.ok ? await inlineParts(await r.text(), base) : "";
      if (ui.openId !== id) return;
      frame.removeAttribute("src");
      frame.srcdoc = '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">' + html;
    } else {
      frame.removeAttribute("srcdoc");
      frame.src = base + "/html";
    }
    setTab("html");
  } else {
    htmlTab.disabled = true;
    frame.removeAttribute("srcdoc");
    frame.src = "about:blank";
    setTab("text");
  }
  const i = ui.items.findIndex((e) => e.id === id);
  if (i >= 0) select(i, false);
}

// With a token, the HTML's inline images (cid: parts, which the server made
// "parts/<n>" URLs) are fetched with the token and put in as data: URLs. The
// HTML is parsed inertly (DOMParser runs no script and loads nothing).
async function inlineParts(html, base) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const img of doc.querySelectorAll('img[src^="parts/"]')) {
    try {
      const r = await api(base + "/" + img.getAttribute("src"));
      if (!r.ok) continue;
      const blob = await r.blob();
      img.setAttribute("src", await new Promise((res, rej) => {
        const fr = new FileReader();
        fr.onload = () => res(fr.result);
        fr.onerror = rej;
        fr.readAsDataURL(blob);
      }));
    } catch (e) { /* left as it was: it will not load */ }
  }
  return "<!DOCTYPE html>" + doc.documentElement.outerHTML;
}

// The part through fetch (so the token goes along), saved under its name.
async function download(url, name) {
  try {
    const r = await api(url);
    if (!r.ok) return;
    const blob = await r.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (e) { /* 401: the token form is up */ }
}

function closeView() {
  ui.openId = null;
  $("view").hidden = true;
  $("v-html").src = "about:blank";
  for (const tr of $("rows").children) tr.classList.remove("selected");
}

async function remove(id) {
  try {
    const r = await api("messages/" + encodeURIComponent(id), { method: "DELETE" });
    if (r.ok || r.status === 404) onDeleted({ id }); // the event may come later: no harm
  } catch (e) { /* 401 */ }
}

async function removeAll() {
  if (!confirm("Delete every message?")) return;
  try {
    const r = await api("messages", { method: "DELETE" });
    if (r.ok) {
      closeView();
      ui.offset = 0;
      ui.fresh.clear();
      for (const e of ui.items) ui.gone.add(e.id);
      load();
    }
  } catch (e) { /* 401 */ }
}

// ---- keys and buttons -----------------------------------------------------------

function onKey(ev) {
  if (ev.target.closest("input, textarea") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const k = ev.key;
  if (k === "j" || k === "ArrowDown") {
    select(ui.selected < 0 ? 0 : Math.min(ui.selected + 1, ui.items.length - 1), true);
  } else if (k === "k" || k === "ArrowUp") {
    select(ui.selected < 0 ? 0 : Math.max(ui.selected - 1, 0), true);
  } else if (k === "Delete" && ui.selected >= 0 && ui.items[ui.selected]) {
    const next = ui.selected;
    remove(ui.items[ui.selected].id).then(() => { if (ui.items.length) select(Math.min(next, ui.items.length - 1), true); });
  } else if (k === "Escape") {
    closeView();
  } else {
    return;
  }
  ev.preventDefault();
}

function init() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("login").hidden = true;
    if (ui.source) { ui.source.close(); ui.source = null; }
    load();
  });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    ui.q = $("q").value.trim();
    ui.offset = 0;
    load();
  });
  // Newer: the page before, or the first page once that is less than a page
  // away (new mail moved the page shown down by what arrived).
  $("newer").addEventListener("click", () => { ui.offset = ui.offset - PAGE < PAGE ? 0 : ui.offset - PAGE; load(); });
  $("older").addEventListener("click", () => { ui.offset += PAGE; load(); });
  $("delete-all").addEventListener("click", removeAll);
  $("v-delete").addEventListener("click", () => { if (ui.openId) remove(ui.openId); });
  $("v-close").addEventListener("click", closeView);
  for (const b of document.querySelectorAll("#tabs button"))
    b.addEventListener("click", () => setTab(b.dataset.tab));
  document.addEventListener("keydown", onKey);
  load();
}

init();
