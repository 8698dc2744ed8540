// realesr serve: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// The job list lives on the server (per token, on disk): the page draws a card for each job it lists, so a
// reload, a second tab or a restarted server show the same cards. Originals are shown from the server's copy of
// the upload, results from the server's file: the browser never re-encodes either.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], limits: null, cards: new Map(), local: new Set(), announced: new Set() };
const ACTIVE = ["queued", "running"];
const VIDEO_RESULT = /\.(mp4|m4v|mov|mkv|webm)$/i;

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status} ${response.statusText}`);
  return body;
}

function formatSeconds(s) {
  if (s == null) return "";
  if (s < 1) return "under a second";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function about(s) { return s < 1 ? "under a second" : `about ${formatSeconds(s)}`; }

function formatBytes(n) {
  if (n == null) return "";
  if (n < 1e6) return `${Math.max(1, Math.round(n / 1e3))} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function announce(text) { $("announce").textContent = text; }

// ------------------------------------------------------------------------------------------ settings

async function loadSettings() {
  try {
    const [models, limits] = await Promise.all([api("/api/models"), api("/api/limits")]);
    state.models = models.models;
    state.limits = limits;
    const select = $("model");
    select.replaceChildren();
    for (const m of state.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (×${m.scale})` + (m.available ? "" : " — downloads first");
      option.title = m.summary;
      if (m.name === models.default) option.selected = true;
      select.appendChild(option);
    }
    $("limits").textContent = `Up to ${limits.max_upload_mb} MB and ${limits.max_pixels / 1e6} megapixels a file.`;
    onModelChange();
  } catch (err) {
    $("limits").textContent = `Could not load the models: ${err.message}`;
  }
}

function currentModel() { return state.models.find((m) => m.name === $("model").value); }

function onModelChange() {
  const m = currentModel();
  if (!m) return;
  $("model-note").textContent = m.summary + (m.available ? "" : ` (${m.where})`);
  $("denoise-field").hidden = !m.denoise;
  showEstimate(m.name);
}

async function showEstimate(name) {
  // Before any job starts: how long this model takes on this machine (the server measures it once, or knows it
  // from the last jobs), and the faster model when this one is slow.
  const text = $("estimate-text"), faster = $("use-faster");
  text.textContent = "Measuring this model's speed on this machine…";
  faster.hidden = true;
  let e;
  try { e = await api(`/api/estimate?model=${encodeURIComponent(name)}`); } catch (err) {
    text.textContent = `No time estimate: ${err.message}`;
    return;
  }
  if ($("model").value !== name) return;
  if (e.seconds_per_megapixel == null) { text.textContent = "No time estimate until the model is on this machine."; return; }
  const rate = e.seconds_per_megapixel;
  text.textContent = `On this machine: ${about(rate)} per megapixel — a 12-megapixel phone photo takes ${about(rate * 12)}.`;
  if (e.faster) {
    text.textContent += ` ${e.faster.model} is faster here (${about(e.faster.seconds_per_megapixel * 12)} for that photo).`;
    faster.textContent = `Use ${e.faster.model}`;
    faster.dataset.model = e.faster.model;
    faster.hidden = false;
  }
}

function onScaleChange() {
  const v = $("scale").value;
  $("scale-field").hidden = v !== "custom";
  $("width-field").hidden = v !== "width";
}

function jobForm(file) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  form.append("model", $("model").value);
  const scale = $("scale").value;
  if (scale === "custom") form.append("outscale", $("scale-value").value);
  else if (scale === "width") form.append("width", $("width-value").value);
  else if (scale !== "model") form.append("outscale", scale);
  form.append("ext", $("format").value);
  const m = currentModel();
  if (m && m.denoise) form.append("denoise_strength", $("denoise").value);
  return form;
}

// ------------------------------------------------------------------------------------------ jobs

function addFiles(files) {
  for (const file of files) submit(file);
}

async function submit(file) {
  const name = file.name || "pasted image";
  const card = newCard(null, name);
  state.local.add(card);
  try {
    const job = await api("/api/jobs", { method: "POST", body: jobForm(file) });
    state.local.delete(card);
    if (state.cards.has(job.id)) { card.el.remove(); return; }  // a refresh drew it already
    card.id = job.id;
    card.born = performance.now();
    card.el.dataset.id = job.id;
    state.cards.set(job.id, card);
    render(card, job);
    updateSummary();
    schedule(0);
  } catch (err) {
    render(card, { name, state: "failed", error: err.message, progress: 0 });
    announce(`${name} failed: ${err.message}`);
  }
}

function newCard(id, name) {
  const el = $("job-template").content.firstElementChild.cloneNode(true);
  const title = el.querySelector(".job-name");
  title.textContent = name;
  title.id = `job-${Math.random().toString(36).slice(2)}`;
  el.setAttribute("aria-labelledby", title.id);
  el.querySelector(".bar").setAttribute("aria-label", `Progress of ${name}`);
  $("jobs").prepend(el);
  $("results").hidden = false;
  if (id) el.dataset.id = id;
  const card = { el, id, name, job: null, viewer: null, born: performance.now() };
  el.querySelector(".job-cancel").addEventListener("click", () => cancel(card));
  return card;
}

function describe(job) {
  const parts = [];
  if (job.input_size) {
    let size = `${job.input_size[0]} × ${job.input_size[1]}`;
    if (job.result_size) size += ` → ${job.result_size[0]} × ${job.result_size[1]} px`;
    else size += " px";
    parts.push(size);
  }
  if (job.frames) parts.push(`${job.frames} frames`);
  if (job.model) parts.push(job.model);
  if (job.result_size && job.input_size && job.input_size[0]) {
    parts.push(`×${+(job.result_size[0] / job.input_size[0]).toFixed(2)}`);
  } else if (job.width) parts.push(`width ${job.width} px`);
  else if (job.outscale) parts.push(`×${job.outscale}`);
  const ext = job.result_name ? job.result_name.split(".").pop().toUpperCase() : (job.ext || "keep");
  parts.push(ext === "KEEP" || ext === "keep" ? "same format" : ext);
  if (job.input_bytes) parts.push(`${formatBytes(job.input_bytes)} upload`);
  if (job.result_name) parts.push(`saved as ${job.result_name}`);
  if (job.state === "done" && job.seconds != null) parts.push(`took ${formatSeconds(job.seconds)}`);
  if (job.notes && job.notes.length) parts.push(...job.notes);
  return parts.join(" · ");
}

function stateLabel(job) {
  const pct = Math.round((job.progress || 0) * 100);
  if (job.state === "running") return `running, ${pct}%` + (job.eta_seconds != null ? ` — ${about(job.eta_seconds)} left` : "");
  if (job.state === "queued") return "waiting" + (job.estimate_seconds != null ? ` — ${about(job.estimate_seconds)} once it starts` : "");
  if (job.state === "done") return "done";
  return job.state;
}

function render(card, job) {
  const previous = card.job ? card.job.state : null;
  card.job = job;
  const el = card.el;
  el.className = `job ${job.state}`;
  el.querySelector(".job-state").textContent = stateLabel(job);
  const pct = job.state === "done" ? 100 : Math.floor((job.progress || 0) * 1000) / 10;
  const bar = el.querySelector(".bar");
  bar.setAttribute("aria-valuenow", String(pct));
  bar.setAttribute("aria-valuetext", stateLabel(job));
  el.querySelector(".bar-fill").style.width = `${pct}%`;
  el.querySelector(".job-error").textContent = job.error || "";
  el.querySelector(".job-info").textContent = describe(job);
  const button = el.querySelector(".job-cancel");
  const active = ACTIVE.includes(job.state);
  button.textContent = active ? "Cancel" : "Remove";
  button.setAttribute("aria-label", `${active ? "Cancel" : "Remove"} ${card.name}`);
  if (job.state === "done" && previous !== "done") showResult(card);
  if (previous && ACTIVE.includes(previous) && !ACTIVE.includes(job.state) && card.id && !state.announced.has(card.id)) {
    state.announced.add(card.id);
    announce(job.state === "done" ? `${card.name} is done.` : job.state === "failed" ? `${card.name} failed: ${job.error}` : `${card.name} was cancelled.`);
  }
}

async function cancel(card) {
  if (!card.id) { removeCard(card); return; }
  const active = card.job && ACTIVE.includes(card.job.state);
  try {
    const job = await api(`/api/jobs/${card.id}`, { method: "DELETE" });
    if (active) { render(card, job); announce(`${card.name} was cancelled.`); return; }
  } catch (_) { /* already gone */ }
  removeCard(card);
}

function removeCard(card) {
  // Focus goes to the next card's button (or the upload button), never to the page's top.
  const next = card.el.nextElementSibling || card.el.previousElementSibling;
  const hadFocus = card.el.contains(document.activeElement);
  if (card.id) state.cards.delete(card.id);
  state.local.delete(card);
  if (card.viewer) card.viewer.dispose();
  card.el.remove();
  if (hadFocus) (next ? next.querySelector(".job-cancel") : $("choose")).focus();
  updateSummary();
}

// The server's job list is the truth: new cards for jobs another tab made, gone cards for jobs removed there.
let pollTimer = null;
function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refresh, ms);
}

async function refresh() {
  const asked = performance.now();
  let jobs;
  try { jobs = (await api("/api/jobs")).jobs; } catch (_) { schedule(3000); return; }
  const seen = new Set();
  for (const job of jobs) {
    seen.add(job.id);
    let card = state.cards.get(job.id);
    if (!card) {
      card = newCard(job.id, job.name);
      state.cards.set(job.id, card);
    }
    render(card, job);
  }
  // A card made after this list was asked for is newer than the list: not gone, only not in it yet.
  for (const [id, card] of state.cards) if (!seen.has(id) && card.born < asked) removeCard(card);
  updateSummary();
  schedule(jobs.some((j) => ACTIVE.includes(j.state)) ? 500 : 3000);
}

function updateSummary() {
  const jobs = [...state.cards.values()].map((c) => c.job).filter(Boolean);
  const done = jobs.filter((j) => j.state === "done").length;
  const active = jobs.filter((j) => ACTIVE.includes(j.state)).length;
  const total = done + active;
  $("results").hidden = state.cards.size === 0 && state.local.size === 0;
  $("summary").textContent = jobs.length ? `${done} of ${total} done` + (active ? `, ${active} to go` : "") : "";
  document.title = active ? `${done} of ${total} done — realesr` : "realesr — upscale";
  $("download-all").disabled = done === 0;
}

// ------------------------------------------------------------------------------------------ viewer

function showResult(card) {
  const el = card.el;
  const resultUrl = `/api/jobs/${card.id}/result`;
  const inputUrl = `/api/jobs/${card.id}/input`;
  const link = el.querySelector(".download");
  link.href = resultUrl;
  link.download = card.job.result_name;
  link.setAttribute("aria-label", `Download ${card.job.result_name}`);
  el.querySelector(".viewer").hidden = false;
  const video = VIDEO_RESULT.test(card.job.result_name);
  card.viewer = new Viewer(el.querySelector(".viewer"), card.name, inputUrl, resultUrl, card.job.result_size, video);
}

class Viewer {
  // One zoom and one pan for both sides, so that the same spot is under the divider on each; for a video, the
  // original follows the result's clock (play, pause, seek, rate).
  constructor(root, name, beforeUrl, afterUrl, size, video) {
    this.root = root;
    this.stage = root.querySelector(".stage");
    this.beforeLayer = root.querySelector(".layer.before");
    this.divider = root.querySelector(".divider");
    this.slider = root.querySelector(".slider");
    this.width = size[0];
    this.height = size[1];
    this.zoom = 1; this.x = 0; this.y = 0;
    this.pointers = new Map();
    const kind = video ? "video" : "img";
    this.after = document.createElement(kind);
    this.before = document.createElement(kind);
    for (const [media, layer, url, label] of [[this.after, ".layer.after", afterUrl, "result"], [this.before, ".layer.before", beforeUrl, "original"]]) {
      if (video) { media.muted = true; media.loop = true; media.playsInline = true; media.preload = "auto"; } else { media.alt = `${name}, ${label}`; }
      media.src = url;
      root.querySelector(layer).appendChild(media);
    }
    this.stage.setAttribute("aria-label", `${name}: before and after. Arrow keys move, plus and minus zoom.`);
    this.slider.setAttribute("aria-label", `Before and after split for ${name}`);
    this.label(root, name);
    this.wire(root, video);
    this.observer = new ResizeObserver(() => this.fit());
    this.observer.observe(this.stage);
    this.fit();
    this.split();
  }

  label(root, name) {
    root.querySelector(".zoom-in").setAttribute("aria-label", `Zoom in on ${name}`);
    root.querySelector(".zoom-out").setAttribute("aria-label", `Zoom out of ${name}`);
    root.querySelector(".zoom-reset").setAttribute("aria-label", `Fit ${name} to the view`);
    root.querySelector(".toggle").setAttribute("aria-label", `Show only the original of ${name}`);
  }

  wire(root, video) {
    this.slider.addEventListener("input", () => this.split());
    root.querySelector(".zoom-in").addEventListener("click", () => this.zoomAt(1.5));
    root.querySelector(".zoom-out").addEventListener("click", () => this.zoomAt(1 / 1.5));
    root.querySelector(".zoom-reset").addEventListener("click", () => this.fit());
    const toggle = root.querySelector(".toggle");
    toggle.addEventListener("click", () => {
      const on = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(on));
      root.classList.toggle("original", on);
    });
    this.stage.addEventListener("keydown", (e) => this.key(e));
    this.stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.stage.getBoundingClientRect();
      this.zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    this.stage.addEventListener("pointerdown", (e) => this.down(e));
    this.stage.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel"]) this.stage.addEventListener(type, (e) => this.up(e));
    if (video) this.syncVideos(root.querySelector(".play"));
    else this.after.addEventListener("load", () => this.fit());
  }

  syncVideos(play) {
    const [a, b] = [this.after, this.before];
    play.hidden = false;
    play.addEventListener("click", () => (a.paused ? a.play() : a.pause()));
    a.addEventListener("play", () => { play.textContent = "Pause"; b.play().catch(() => {}); });
    a.addEventListener("pause", () => { play.textContent = "Play"; b.pause(); b.currentTime = a.currentTime; });
    a.addEventListener("seeked", () => { b.currentTime = a.currentTime; });
    a.addEventListener("ratechange", () => { b.playbackRate = a.playbackRate; });
    a.addEventListener("timeupdate", () => { if (Math.abs(b.currentTime - a.currentTime) > 0.1) b.currentTime = a.currentTime; });
    a.addEventListener("loadedmetadata", () => this.fit());
  }

  key(e) {
    const step = 40;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[e.key]) { this.x += moves[e.key][0]; this.y += moves[e.key][1]; this.apply(); }
    else if (e.key === "+" || e.key === "=") this.zoomAt(1.5);
    else if (e.key === "-") this.zoomAt(1 / 1.5);
    else if (e.key === "0") this.fit();
    else return;
    e.preventDefault();
  }

  down(e) {
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    this.stage.setPointerCapture(e.pointerId);
    this.stage.classList.add("dragging");
    this.gesture = null;
  }

  move(e) {
    const last = this.pointers.get(e.pointerId);
    if (!last) return;
    const now = { x: e.clientX, y: e.clientY };
    if (this.pointers.size === 2) {
      // Pinch: zoom by the change of the fingers' distance, about their midpoint.
      const other = [...this.pointers.entries()].find(([id]) => id !== e.pointerId)[1];
      const before = Math.hypot(last.x - other.x, last.y - other.y), after = Math.hypot(now.x - other.x, now.y - other.y);
      const r = this.stage.getBoundingClientRect();
      if (before > 0) this.zoomAt(after / before, (now.x + other.x) / 2 - r.left, (now.y + other.y) / 2 - r.top);
    } else {
      this.x += now.x - last.x;
      this.y += now.y - last.y;
      this.apply();
    }
    this.pointers.set(e.pointerId, now);
  }

  up(e) {
    this.pointers.delete(e.pointerId);
    if (!this.pointers.size) this.stage.classList.remove("dragging");
  }

  fit() {
    // The stage takes the picture's shape (up to 70 % of the window's height), and the picture fills it: a small
    // result is enlarged to fit, not left in a field of checkerboard.
    const w = this.stage.clientWidth || 800;
    const h = Math.max(160, Math.min(window.innerHeight * 0.7, w * this.height / this.width));
    this.stage.style.height = `${Math.round(h)}px`;
    this.zoom = Math.min(w / this.width, h / this.height);
    this.x = (w - this.width * this.zoom) / 2;
    this.y = (h - this.height * this.zoom) / 2;
    this.apply();
  }

  zoomAt(factor, cx, cy) {
    const w = this.stage.clientWidth, h = this.stage.clientHeight;
    if (cx === undefined) { cx = w / 2; cy = h / 2; }
    const zoom = Math.min(Math.max(this.zoom * factor, 0.02), 32);
    // Keep the image point under (cx, cy) where it is.
    this.x = cx - (cx - this.x) * (zoom / this.zoom);
    this.y = cy - (cy - this.y) * (zoom / this.zoom);
    this.zoom = zoom;
    this.apply();
  }

  apply() {
    for (const media of [this.before, this.after]) {
      // The original is stretched to the result's size: both sides show the same region at the same size.
      media.style.width = `${this.width * this.zoom}px`;
      media.style.height = `${this.height * this.zoom}px`;
      media.style.transform = `translate(${this.x}px, ${this.y}px)`;
    }
    this.root.querySelector(".zoom-level").textContent = `${Math.round(this.zoom * 100)}%`;
  }

  split() {
    const p = Number(this.slider.value);
    this.beforeLayer.style.clipPath = `inset(0 ${100 - p}% 0 0)`;
    this.divider.style.left = `calc(${p}% - 1px)`;
    this.slider.setAttribute("aria-valuetext", `${p}% original, ${100 - p}% result`);
  }

  dispose() {
    this.observer.disconnect();
    if (this.after.pause) { this.after.pause(); this.before.pause(); }
  }
}

// ------------------------------------------------------------------------------------------ wiring

function wire() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles([...e.dataTransfer.files]);
  });
  $("choose").addEventListener("click", () => $("files").click());
  $("files").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  document.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (files.length) addFiles(files);
  });
  $("model").addEventListener("change", onModelChange);
  $("use-faster").addEventListener("click", () => {
    $("model").value = $("use-faster").dataset.model;
    onModelChange();
    $("model").focus();
  });
  $("scale").addEventListener("change", onScaleChange);
  $("denoise").addEventListener("input", () => { $("denoise-value").textContent = $("denoise").value; });
  $("download-all").addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = "/api/results.zip";
    a.download = "realesr-results.zip";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  $("clear-done").addEventListener("click", () => {
    for (const card of [...state.cards.values(), ...state.local]) {
      if (card.job && !ACTIVE.includes(card.job.state)) cancel(card);
    }
  });
}

wire();
loadSettings();
refresh();
