// muqkit search page: plain JavaScript over the JSON API under /api/ (no framework, no network beyond this server).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, tracks: [], selected: null, map: null };
window.muqkit = state;  // for scripts and tests
const PALETTE = ["#2a6df4", "#e4572e", "#17bebb", "#ffc914", "#76b041", "#9b5de5", "#f15bb5", "#00a6a6",
                 "#ff8c42", "#4f6d7a", "#c2185b", "#8d6e63"];

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function message(text, isError) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
}

function tagList() {
  return $("tag-list").value.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
}

function play(track) {
  const player = $("player");
  player.src = track.audio;
  player.dataset.trackId = String(track.id);
  $("now-playing").textContent = `${track.name}` + (track.playable ? "" : " (transcoded to WAV)");
  player.play().catch((e) => message(`cannot play ${track.name}: ${e.message}`, true));
}

function render(title, hits) {
  $("results-title").textContent = title;
  const list = $("results");
  list.replaceChildren();
  for (const hit of hits) {
    const t = hit.track;
    const li = document.createElement("li");
    li.className = "result";
    li.dataset.id = String(t.id);
    if (hit.score !== null) li.dataset.score = String(hit.score);
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = String(hit.rank);
    const label = document.createElement("div");
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = t.name;
    name.title = t.path;
    if (!t.playable) {
      const flag = document.createElement("span");
      flag.className = "flag";
      flag.textContent = "transcoded";
      flag.title = "browsers cannot play this format; the server sends it as WAV";
      name.append(flag);
    }
    const folder = document.createElement("div");
    folder.className = "folder";
    folder.textContent = t.folder;
    label.append(name, folder);
    const actions = document.createElement("div");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score === null ? "" : hit.score.toFixed(3);
    const playButton = button("Play", "play", () => play(t));
    const more = button("More like this", "more", () => moreLikeThis(t));
    const tags = button("Tags", "tags-button", () => showTags(t));
    actions.append(score, playButton, more, tags);
    li.append(rank, label, actions);
    list.append(li);
  }
  if (!hits.length) message("no results");
}

function button(text, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function select(track) {
  state.selected = track;
  for (const li of document.querySelectorAll(".result")) li.classList.toggle("selected", li.dataset.id === String(track.id));
}

async function searchText(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) return message("type a description first", true);
  message("searching...");
  try {
    const body = await api(`/api/search?q=${encodeURIComponent(q)}&k=${$("k").value}`);
    message("");
    render(`Results for "${q}"`, body.hits);
  } catch (e) { message(e.message, true); }
}

async function moreLikeThis(track) {
  select(track);
  message("searching...");
  try {
    const body = await api(`/api/tracks/${track.id}/similar?k=${$("k").value}`);
    message("");
    render(`More like ${track.name}`, body.hits);
  } catch (e) { message(e.message, true); }
}

async function showTags(track) {
  select(track);
  showPanel("tags-panel");
  $("tags-title").textContent = track.name;
  const body = $("tags").tBodies[0];
  body.replaceChildren();
  if (!state.info.text_search) {
    $("tags-title").textContent = "Tags need a MuQ-MuLan index (this one holds MuQ latents)";
    return;
  }
  try {
    const tags = tagList();
    const result = await api(`/api/tracks/${track.id}/tags?tags=${encodeURIComponent(tags.join(","))}`);
    const top = Math.max(...result.tags.map((t) => Math.abs(t.score)), 1e-9);
    for (const t of result.tags) {
      const row = body.insertRow();
      row.insertCell().textContent = t.tag;
      row.insertCell().textContent = t.score.toFixed(3);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, 100 * Math.max(0, t.score) / top)}px`;
      row.insertCell().append(bar);
    }
  } catch (e) { $("tags-title").textContent = e.message; }
}

async function searchFile(file) {
  if (!file) return;
  const limit = state.info.max_upload_mb * 1024 * 1024;
  if (file.size > limit) return message(`${file.name}: ${(file.size / 1048576).toFixed(1)} MiB; the limit is ${state.info.max_upload_mb} MiB`, true);
  message(`searching with ${file.name}...`);
  try {
    const body = await api(`/api/search/audio?k=${$("k").value}&name=${encodeURIComponent(file.name)}`,
                           { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    message("");
    render(`Like ${file.name}`, body.hits);
  } catch (e) { message(e.message, true); }
}

function showPanel(id) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.panel === id);
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== id;
  if (id === "map-panel") drawMap();
}

async function drawMap() {
  const colourBy = $("map-colour").value;
  const url = colourBy === "tag" ? `/api/map?tags=${encodeURIComponent(tagList().join(","))}` : "/api/map";
  let body;
  try { body = await api(url); } catch (e) { $("legend").textContent = e.message; return; }
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const size = canvas.width, pad = 14, radius = body.points.length > 2000 ? 2 : 5;
  ctx.clearRect(0, 0, size, size);
  const key = (p) => (colourBy === "tag" ? p.tag : p.folder);
  const groups = [...new Set(body.points.map(key))].sort();
  const colour = new Map(groups.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  const points = body.points.map((p) => ({ id: p.id, cx: pad + p.x * (size - 2 * pad), cy: pad + (1 - p.y) * (size - 2 * pad), group: key(p) }));
  for (const p of points) {
    ctx.beginPath();
    ctx.arc(p.cx, p.cy, radius, 0, 2 * Math.PI);
    ctx.fillStyle = colour.get(p.group);
    ctx.globalAlpha = 0.85;
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  state.map = points;
  canvas.dataset.points = String(points.length);
  const legend = $("legend");
  legend.replaceChildren();
  for (const g of groups.slice(0, 24)) {
    const item = document.createElement("span");
    const dot = document.createElement("i");
    dot.style.background = colour.get(g);
    item.append(dot, document.createTextNode(g));
    legend.append(item);
  }
}

function mapClick(event) {
  if (!state.map) return;
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width);
  const y = (event.clientY - rect.top) * (canvas.height / rect.height);
  let best = null, bestDistance = 12 * 12;
  for (const p of state.map) {
    const d = (p.cx - x) ** 2 + (p.cy - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  if (best) {
    const track = state.tracks[best.id];
    select(track);
    play(track);
  }
}

async function init() {
  state.info = await api("/api/info");
  state.tracks = (await api("/api/tracks")).tracks;
  $("tag-list").value = state.info.default_tags.join(", ");
  $("info").textContent = `${state.info.tracks} tracks - model ${state.info.model}`;
  if (!state.info.text_search) {
    $("query").disabled = true;
    $("search-button").disabled = true;
    $("query").placeholder = "Text search needs a MuQ-MuLan index; search with an audio file or a track";
    $("map-colour").querySelector("option[value=tag]").disabled = true;
  }
  $("search-form").addEventListener("submit", searchText);
  $("upload").addEventListener("change", (e) => searchFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); searchFile(e.dataTransfer.files[0]); });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showPanel(tab.dataset.panel));
  $("map-colour").addEventListener("change", drawMap);
  $("map").addEventListener("click", mapClick);
  $("player").addEventListener("error", () => message(`cannot play ${$("now-playing").textContent}`, true));
  const shown = state.tracks.length > 50 ? `Tracks (the first 50 of ${state.tracks.length})` : "Tracks";
  render(shown, state.tracks.slice(0, 50).map((t, i) => ({ rank: i + 1, score: null, track: t })));
  document.body.dataset.ready = "1";
}

init().catch((e) => message(`cannot reach the server: ${e.message}`, true));
