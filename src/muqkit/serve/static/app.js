// muqkit search page: plain JavaScript over the JSON API under /api/ (no framework, no network beyond this server).
//
// What is shown is a "view": the track list (a page of it, maybe filtered), a text search, more like a track, or
// an upload's results. Every view but an upload lives in the URL (?q=, ?similar=, ?filter=&page=), so Back,
// Forward, reload and shared links show it again; an upload's results live in the history entry only.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;  // tracks per page of the track list
const state = { info: null, tracks: new Map(), selected: null, playing: null, view: null, seq: 0,
                map: null, mapPoints: null, mapGroups: null, filterTimer: null };
window.muqkit = state;  // for scripts and tests
const PALETTE = ["#2a6df4", "#e4572e", "#17bebb", "#ffc914", "#76b041", "#9b5de5", "#f15bb5", "#00a6a6",
                 "#ff8c42", "#4f6d7a", "#c2185b", "#8d6e63"];
const SIMILARITY = {  // label: on each score; title: over the results and on hover
  "text-to-audio": { label: "text", title: "text-to-music similarity (the cosine of the description and each track; " +
                     "it runs lower than music-to-music similarity)" },
  "audio-to-audio": { label: "audio", title: "music-to-music similarity (the cosine of two recordings; 1 is the same audio)" },
};

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

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.floor(seconds);  // as the player counts
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

// ---- playing ----

function player() { return $("player"); }

function isPlaying(track) {
  return state.playing !== null && track !== null && state.playing.id === track.id;
}

function play(track) {
  const audio = player();
  state.playing = track;
  audio.src = track.audio;
  audio.dataset.trackId = String(track.id);
  const attempt = audio.src;
  audio.play().catch((e) => {
    if (e.name !== "AbortError" && audio.src === attempt) playbackFailed(track);
  });
  showPlaying();
}

function togglePlay(track) {
  const audio = player();
  if (!isPlaying(track)) return play(track);
  if (audio.paused) audio.play().catch((e) => { if (e.name !== "AbortError") playbackFailed(track); });
  else audio.pause();
}

function toggleCurrent() {
  if (state.playing) return togglePlay(state.playing);
  const first = document.querySelector(".result");
  if (first) togglePlay(state.tracks.get(Number(first.dataset.id)));
}

// The <audio> element only says that it failed; ask the server what went wrong (a moved file, a corrupt one).
async function playbackFailed(track) {
  if (!track) return;
  let text = `cannot play ${track.name}: the browser cannot decode this audio`;
  try {
    const response = await fetch(track.audio, { headers: { Range: "bytes=0-0" } });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      text = (body && body.error) || `cannot play ${track.name}: the server answered ${response.status}`;
    }
  } catch (e) { text = `cannot play ${track.name}: the server cannot be reached`; }
  if (isPlaying(track)) message(text, true);
}

// The playing track everywhere: its row highlighted with Pause on it, the footer, the tab title, the map's ring.
function showPlaying() {
  const audio = player();
  const id = state.playing ? String(state.playing.id) : null;
  const running = id !== null && !audio.paused;
  for (const li of document.querySelectorAll(".result")) {
    const mine = li.dataset.id === id;
    li.classList.toggle("playing", mine);
    const b = li.querySelector("button.play");
    b.textContent = mine && running ? "Pause" : "Play";
    b.setAttribute("aria-pressed", String(mine && running));
  }
  const t = state.playing;
  $("now-playing").textContent = t ? `${running ? "Playing" : "Paused"}: ${t.name}`
    + (t.playable ? "" : " (transcoded to WAV)") : "Nothing playing (space plays and pauses)";
  document.title = t && running ? `\u25B6 ${t.name} - muqkit` : "muqkit search";
  paintMap();
}

// ---- results ----

function render(title, hits, similarity) {
  $("results-title").textContent = title;
  const kind = SIMILARITY[similarity];
  $("score-label").hidden = !kind;
  $("score-label").textContent = kind ? `Scores: ${kind.title}.` : "";
  const list = $("results");
  list.replaceChildren();
  for (const hit of hits) list.append(row(hit, kind));
  if (!hits.length) message(state.view && state.view.kind === "tracks" ? "no tracks match" : "no results");
  showPlaying();
}

function row(hit, kind) {
  const t = hit.track;
  state.tracks.set(t.id, t);
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.id = String(t.id);
  if (state.selected && state.selected.id === t.id) li.classList.add("selected");
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = String(hit.rank);
  const playButton = button("Play", "play", () => togglePlay(t));
  playButton.title = `play or pause ${t.name}`;
  const label = document.createElement("div");
  label.className = "label";
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
  const meta = document.createElement("div");
  meta.className = "meta";
  const folder = document.createElement("span");
  folder.className = "folder";
  folder.textContent = t.folder;
  const duration = document.createElement("span");
  duration.className = "duration";
  duration.textContent = clock(t.duration);
  if (t.duration !== null && t.duration !== undefined) duration.dataset.seconds = String(t.duration);
  meta.append(folder, duration);
  label.append(name, meta);
  li.append(rank, playButton, label);
  if (kind && hit.score !== null) {
    const score = document.createElement("span");
    score.className = "score";
    score.title = kind.title;
    const what = document.createElement("span");
    what.className = "kind";
    what.textContent = kind.label;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = hit.score.toFixed(3);
    score.append(what, value);
    li.dataset.score = String(hit.score);
    li.append(score);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(button("More like this", "more", () => show({ kind: "similar", id: t.id })),
                 button("Tags", "tags-button", () => showTags(t)));
  li.append(actions);
  return li;
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

async function trackById(id) {
  if (!state.tracks.has(id)) state.tracks.set(id, await api(`/api/tracks/${id}`));
  return state.tracks.get(id);
}

// ---- views and the URL ----

function viewFromUrl() {
  const p = new URLSearchParams(location.search);
  const k = p.get("k");
  if (k && [...$("k").options].some((o) => o.value === k)) $("k").value = k;
  if (p.get("q")) return { kind: "text", q: p.get("q") };
  if (p.get("similar") !== null && /^\d+$/.test(p.get("similar"))) return { kind: "similar", id: Number(p.get("similar")) };
  const page = Number(p.get("page"));
  return { kind: "tracks", filter: p.get("filter") || "", page: Number.isInteger(page) && page > 1 ? page : 1 };
}

function urlOf(view) {
  const p = new URLSearchParams();
  if (view.kind === "text") p.set("q", view.q);
  if (view.kind === "similar") p.set("similar", String(view.id));
  if (view.kind === "tracks" && view.filter) p.set("filter", view.filter);
  if (view.kind === "tracks" && view.page > 1) p.set("page", String(view.page));
  if ((view.kind === "text" || view.kind === "similar") && $("k").value !== "10") p.set("k", $("k").value);
  const query = p.toString();
  return query ? `${location.pathname}?${query}` : location.pathname;
}

// Show a view; how: "push" (a new history entry), "replace" (this entry) or "none" (Back, Forward).
async function show(view, how = "push") {
  const ticket = ++state.seq;
  state.view = view;
  const browsing = view.kind === "tracks";
  $("browse").hidden = !browsing;
  $("browse-link").hidden = browsing;
  if (view.kind === "text") $("query").value = view.q;
  if (browsing && document.activeElement !== $("track-filter")) $("track-filter").value = view.filter;
  if (view.kind !== "upload") {
    const entry = { kind: view.kind };
    if (how === "push") history.pushState(entry, "", urlOf(view));
    if (how === "replace") history.replaceState(entry, "", urlOf(view));
  }
  if (view.kind === "upload") {  // from the history entry: its results came with it
    message("");
    return render(`Like ${view.name}`, view.hits, view.similarity);
  }
  message(browsing ? "" : "searching...");
  try {
    const shown = await fetchView(view);
    if (ticket !== state.seq) return;  // a later view is on its way
    message("");
    render(shown.title, shown.hits, shown.similarity);
    if (browsing) showPager(view, shown.total, shown.hits.length);
  } catch (e) {
    if (ticket === state.seq) {
      message(e.message, true);
      $("results").replaceChildren();
    }
  }
}

async function fetchView(view) {
  const k = $("k").value;
  if (view.kind === "text") {
    const body = await api(`/api/search?q=${encodeURIComponent(view.q)}&k=${k}`);
    return { title: `Results for "${view.q}"`, hits: body.hits, similarity: body.similarity };
  }
  if (view.kind === "similar") {
    const body = await api(`/api/tracks/${view.id}/similar?k=${k}`);
    state.tracks.set(body.track.id, body.track);
    select(body.track);
    return { title: `More like ${body.track.name}`, hits: body.hits, similarity: body.similarity };
  }
  const offset = (view.page - 1) * PAGE;
  const filter = view.filter ? `&q=${encodeURIComponent(view.filter)}` : "";
  const body = await api(`/api/tracks?offset=${offset}&limit=${PAGE}${filter}`);
  const hits = body.tracks.map((t, i) => ({ rank: offset + i + 1, score: null, track: t }));
  const title = view.filter ? `Tracks matching "${view.filter}"` : "Tracks";
  return { title, hits, similarity: null, total: body.total };
}

function showPager(view, total, count) {
  const offset = (view.page - 1) * PAGE;
  $("page-info").textContent = count ? `${offset + 1}\u2013${offset + count} of ${total}` : `none of ${total}`;
  $("prev-page").disabled = view.page <= 1;
  $("next-page").disabled = offset + count >= total;
  $("browse").dataset.total = String(total);
}

function turnPage(step) {
  const view = state.view;
  if (view && view.kind === "tracks") show({ kind: "tracks", filter: view.filter, page: Math.max(1, view.page + step) });
}

function filterTracks() {
  clearTimeout(state.filterTimer);
  state.filterTimer = setTimeout(() => {
    const filter = $("track-filter").value.trim();
    const current = state.view && state.view.kind === "tracks" ? state.view : null;
    if (current && current.filter === filter) return;
    show({ kind: "tracks", filter, page: 1 }, current && current.filter ? "replace" : "push");
  }, 250);
}

function searchText(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) return message("type a description first", true);
  show({ kind: "text", q });
}

async function searchFile(file) {
  if (!file) return;
  const limit = state.info.max_upload_mb * 1024 * 1024;
  if (file.size > limit) return message(`${file.name}: ${(file.size / 1048576).toFixed(1)} MiB; the limit is ${state.info.max_upload_mb} MiB`, true);
  const ticket = ++state.seq;
  message(`searching with ${file.name}...`);
  try {
    const body = await api(`/api/search/audio?k=${$("k").value}&name=${encodeURIComponent(file.name)}`,
                           { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    if (ticket !== state.seq) return;
    const view = { kind: "upload", name: file.name, hits: body.hits, similarity: body.similarity };
    history.pushState(view, "", location.pathname);  // the file cannot be in the URL: its results are in the entry
    show(view, "none");
  } catch (e) { if (ticket === state.seq) message(e.message, true); }
}

// ---- tags ----

async function showTags(track) {
  select(track);
  showPanel("tags-panel");
  if (window.matchMedia("(max-width: 899px)").matches) $("tags-panel").scrollIntoView({ block: "start" });  // stacked below
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

// ---- the map ----

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
  const size = canvas.width, pad = 14;
  const key = (p) => (colourBy === "tag" ? p.tag : p.folder);
  const groups = [...new Set(body.points.map(key))].sort();
  const colour = new Map(groups.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  state.map = body.points.map((p) => ({ id: p.id, name: p.name, folder: p.folder, colour: colour.get(key(p)),
                                        cx: pad + p.x * (size - 2 * pad), cy: pad + (1 - p.y) * (size - 2 * pad) }));
  paintMap();
  canvas.dataset.points = String(state.map.length);
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

function paintMap() {
  if (!state.map) return;
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const radius = state.map.length > 2000 ? 2 : 5;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 0.85;
  for (const p of state.map) {
    ctx.beginPath();
    ctx.arc(p.cx, p.cy, radius, 0, 2 * Math.PI);
    ctx.fillStyle = p.colour;
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  const playing = state.playing ? state.map.find((p) => p.id === state.playing.id) : null;
  canvas.dataset.playing = playing ? String(playing.id) : "";
  if (playing) {  // a ring around the playing track, drawn last so that it is on top
    ctx.beginPath();
    ctx.arc(playing.cx, playing.cy, radius + 5, 0, 2 * Math.PI);
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#1d232a";
    ctx.stroke();
  }
}

function mapPoint(event) {
  if (!state.map) return null;
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const scale = canvas.width / rect.width;
  const x = (event.clientX - rect.left) * scale, y = (event.clientY - rect.top) * (canvas.height / rect.height);
  let best = null, bestDistance = (12 * Math.max(1, scale)) ** 2;
  for (const p of state.map) {
    const d = (p.cx - x) ** 2 + (p.cy - y) ** 2;
    if (d < bestDistance) { best = p; bestDistance = d; }
  }
  return best;
}

async function mapClick(event) {
  const point = mapPoint(event);
  if (!point) return;
  try {
    const track = await trackById(point.id);
    select(track);
    if (!isPlaying(track)) play(track);
    else togglePlay(track);
  } catch (e) { message(e.message, true); }
}

function mapHover(event) {
  const point = mapPoint(event);
  const tip = $("map-tip"), canvas = $("map");
  canvas.style.cursor = point ? "pointer" : "crosshair";
  if (!point) { tip.hidden = true; return; }
  const rect = canvas.getBoundingClientRect();
  tip.textContent = point.folder && point.folder !== "." ? `${point.name} (${point.folder})` : point.name;
  tip.dataset.id = String(point.id);
  tip.style.left = `${canvas.offsetLeft + point.cx * rect.width / canvas.width}px`;
  tip.style.top = `${canvas.offsetTop + point.cy * rect.height / canvas.height}px`;
  tip.hidden = false;
}

// ---- keys and start ----

function isTyping(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement
    || target instanceof HTMLSelectElement || target instanceof HTMLAudioElement || Boolean(target && target.isContentEditable);
}

function spaceKey(event) {
  if (event.key !== " " || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
  event.preventDefault();  // no page scroll, and no click of a focused button: space is play and pause
  if (event.type === "keydown" && !event.repeat) toggleCurrent();
}

async function init() {
  state.info = await api("/api/info");
  $("tag-list").value = state.info.default_tags.join(", ");
  $("info").textContent = `${state.info.tracks} tracks \u00b7 model ${state.info.model}`;
  if (!state.info.text_search) {
    $("query").disabled = true;
    $("search-button").disabled = true;
    $("query").placeholder = "Text search needs a MuQ-MuLan index; search with an audio file or a track";
    $("map-colour").querySelector("option[value=tag]").disabled = true;
  }
  $("search-form").addEventListener("submit", searchText);
  $("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // choosing the same file again is a change again: it searches again
    searchFile(file);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); searchFile(e.dataTransfer.files[0]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("upload").click(); });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showPanel(tab.dataset.panel));
  for (const link of [$("home"), $("browse-link")]) {
    link.addEventListener("click", (e) => { e.preventDefault(); show({ kind: "tracks", filter: "", page: 1 }); });
  }
  $("track-filter").addEventListener("input", filterTracks);
  $("prev-page").addEventListener("click", () => turnPage(-1));
  $("next-page").addEventListener("click", () => turnPage(1));
  $("map-colour").addEventListener("change", drawMap);
  $("map").addEventListener("click", mapClick);
  $("map").addEventListener("mousemove", mapHover);
  $("map").addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  const audio = player();
  for (const event of ["play", "pause", "ended", "emptied"]) audio.addEventListener(event, showPlaying);
  audio.addEventListener("error", () => playbackFailed(state.playing));
  document.addEventListener("keydown", spaceKey);
  document.addEventListener("keyup", spaceKey);
  window.addEventListener("popstate", (e) => show(e.state && e.state.kind === "upload" ? e.state : viewFromUrl(), "none"));
  await show(viewFromUrl(), "replace");
  document.body.dataset.ready = "1";
}

init().catch((e) => message(`cannot reach the server: ${e.message}`, true));
