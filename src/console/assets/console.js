// The annals console. Everything it shows comes from the server's API:
// JSON through /api/annals.v1.TimelineService/METHOD, pictures through
// /draw/* (SVG drawn from the same answers). Its state lives in the URL's
// fragment (#entity=north-korea&at=1951-06-01&as_of=0), so a view can be
// linked to and reloaded.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { entity: "north-korea", at: "1951-06-01", as_of: 0, from: "", to: "", counterpart: "", label: "" };

function headers(json) {
  const h = {};
  if (json) h["content-type"] = "application/json";
  const token = sessionStorage.getItem("annals-token");
  if (token) h["authorization"] = "Bearer " + token;
  return h;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(method, request) {
  const response = await fetch("/api/annals.v1.TimelineService/" + method, {
    method: "POST", headers: headers(true), body: JSON.stringify(request),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(method + ": " + answer.code + ": " + answer.message);
  return answer;
}

async function picture(target, path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== 0));
  const response = await fetch(path + "?" + query, { headers: headers(false) });
  const text = await response.text();
  if (!response.ok) {
    const answer = JSON.parse(text);
    throw new Error(answer.code + ": " + answer.message);
  }
  // The SVG is the server's drawing; parsed as XML, never as HTML.
  const svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  $(target).replaceChildren(document.importNode(svg, true));
}

function saveState() {
  const fragment = new URLSearchParams(Object.entries(state).filter(([, v]) => v !== "" && v !== 0));
  history.replaceState(null, "", "#" + fragment);
}

function loadState() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  for (const key of Object.keys(state)) {
    if (fragment.has(key)) state[key] = key === "as_of" ? Number(fragment.get(key)) || 0 : fragment.get(key);
  }
  $("search").value = state.entity;
  $("at").value = state.at;
  $("as-of").value = state.as_of;
  $("from").value = state.from;
  $("to").value = state.to;
  $("counterpart").value = state.counterpart;
  $("label").value = state.label;
  const year = parseInt(state.at, 10);
  if (year) $("slider").value = year;
}

async function refresh() {
  saveState();
  showError("");
  document.body.dataset.ready = "loading";
  const jobs = [
    picture("timeline", "/draw/timeline", { entity: state.entity, from: state.from, to: state.to, as_of: state.as_of }),
    picture("graph", "/draw/graph", { at: state.at, as_of: state.as_of }),
    events(),
    logLength(),
  ];
  if (state.counterpart || state.label) {
    jobs.push(picture("trend", "/draw/trend", { entity: state.entity, counterpart: state.counterpart, label: state.label, as_of: state.as_of }));
  }
  const outcomes = await Promise.allSettled(jobs);
  const failed = outcomes.find((outcome) => outcome.status === "rejected");
  if (failed) showError(failed.reason.message);
  document.body.dataset.ready = "yes";
}

async function logLength() {
  const answer = await api("ReadLog", { reverse: true, limit: 1 });
  $("log-length").textContent = "log: " + answer.last_seq + " entries";
  $("as-of").max = answer.last_seq;
}

async function events() {
  const answer = await api("ListEvents", { entity: state.entity, as_of_seq: state.as_of, page_size: 200 });
  const rows = answer.entries.map((entry) => {
    const event = entry.event;
    const row = document.createElement("tr");
    row.dataset.event = event.id;
    const source = event.source || {};
    const status = entry.superseded_by ? "withdrawn by " + entry.superseded_by : event.corrects ? "corrects " + event.corrects : "";
    if (entry.superseded_by) row.className = "withdrawn";
    const when = event.occurred.end ? event.occurred.start + " – " + event.occurred.end : event.occurred.start;
    for (const text of [entry.seq, when, event.kind, event.summary]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const cell = document.createElement("td");
    if (source.url && /^https?:/.test(source.url)) {
      const link = document.createElement("a");
      link.href = source.url;
      link.textContent = source.document || source.url;
      cell.append(link);
    } else {
      cell.textContent = source.document || "";
    }
    if (source.quote) cell.append(document.createElement("br"), "“" + source.quote + "”");
    const last = document.createElement("td");
    last.textContent = status;
    row.append(cell, last);
    return row;
  });
  $("events").tBodies[0].replaceChildren(...rows);
}

async function showEvent(ids) {
  const box = $("event");
  box.replaceChildren();
  for (const id of ids.filter(Boolean)) {
    const answer = await api("GetEvent", { id });
    const event = answer.entry.event;
    const source = event.source || {};
    const part = document.createElement("p");
    const title = document.createElement("strong");
    title.textContent = event.id + " (seq " + answer.entry.seq + "), " + event.occurred.start + ": ";
    part.append(title, event.summary);
    if (source.quote) part.append(document.createElement("br"), "“" + source.quote + "”");
    if (source.url && /^https?:/.test(source.url)) {
      const link = document.createElement("a");
      link.href = source.url;
      link.textContent = " " + (source.document || "source");
      part.append(document.createElement("br"), link);
    }
    box.append(part);
  }
  box.hidden = false;
}

let typing;
async function suggest() {
  const query = $("search").value.trim();
  const list = $("suggestions");
  if (!query) { list.hidden = true; return; }
  const answer = await api("ListEntities", { query, page_size: 10 });
  list.replaceChildren(...answer.entities.map((entity) => {
    const item = document.createElement("li");
    item.dataset.id = entity.id;
    item.textContent = entity.name + " (" + entity.id + (entity.aliases.length ? "; " + entity.aliases.join(", ") : "") + ")";
    item.addEventListener("click", () => { state.entity = entity.id; $("search").value = entity.id; list.hidden = true; refresh(); });
    return item;
  }));
  list.hidden = answer.entities.length === 0;
}

document.addEventListener("DOMContentLoaded", () => {
  loadState();
  $("token").value = sessionStorage.getItem("annals-token") || "";
  $("token").addEventListener("change", () => { sessionStorage.setItem("annals-token", $("token").value); refresh(); });
  $("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => suggest().catch((e) => showError(e.message)), 150); });
  $("search").addEventListener("keydown", (e) => { if (e.key === "Enter") { state.entity = $("search").value.trim(); $("suggestions").hidden = true; refresh(); } });
  $("as-of").addEventListener("change", () => { state.as_of = Number($("as-of").value) || 0; refresh(); });
  $("slider").addEventListener("input", () => { state.at = $("slider").value + "-06-01"; $("at").value = state.at; });
  $("slider").addEventListener("change", refresh);
  $("at").addEventListener("change", () => { state.at = $("at").value.trim(); refresh(); });
  $("window").addEventListener("submit", (e) => { e.preventDefault(); state.from = $("from").value.trim(); state.to = $("to").value.trim(); refresh(); });
  $("trend-form").addEventListener("submit", (e) => { e.preventDefault(); state.counterpart = $("counterpart").value.trim(); state.label = $("label").value.trim(); refresh(); });
  $("timeline").addEventListener("click", (e) => {
    const interval = e.target.closest(".interval");
    if (interval) showEvent([interval.dataset.begunBy, interval.dataset.endedBy]).catch((error) => showError(error.message));
  });
  $("graph").addEventListener("click", (e) => {
    const edge = e.target.closest(".edge");
    if (edge) showEvent([edge.dataset.event]).catch((error) => showError(error.message));
  });
  window.addEventListener("hashchange", () => { loadState(); refresh(); });
  refresh();
});
