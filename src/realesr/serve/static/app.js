// realesr serve: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Originals are shown from the dropped bytes (object URLs) and results from the server's file: the browser
// never re-encodes either.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], limits: null, jobs: new Map() };

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function formatSeconds(s) {
  if (s == null) return "";
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// ------------------------------------------------------------------------------------------ settings

async function loadSettings() {
  try {
    const [models, limits] = await Promise.all([api("/api/models"), api("/api/limits")]);
    state.models = models.models;
    state.limits = limits;
    const select = $("model");
    select.innerHTML = "";
    for (const m of state.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (×${m.scale})` + (m.available ? "" : " — " + (m.where.startsWith("downloads") ? "needs a download" : "not available"));
      option.title = m.summary;
      if (m.name === models.default) option.selected = true;
      select.appendChild(option);
    }
    $("limits").textContent = `Up to ${limits.max_upload_mb} MB and ${limits.max_pixels / 1e6} megapixels per image.`;
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
  $("denoise-label").hidden = !m.denoise;
}

function onScaleChange() {
  const v = $("scale").value;
  $("scale-value").hidden = v !== "custom";
  $("width-value").hidden = v !== "width";
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
  const card = newCard(file.name || "pasted image", file);
  try {
    const job = await api("/api/jobs", { method: "POST", body: jobForm(file) });
    card.id = job.id;
    card.el.dataset.id = job.id;
    state.jobs.set(job.id, card);
    render(card, job);
    poll(card);
  } catch (err) {
    render(card, { state: "failed", error: err.message, progress: 0 });
  }
}

function newCard(name, file) {
  const el = $("job-template").content.firstElementChild.cloneNode(true);
  el.querySelector(".job-name").textContent = name;
  $("jobs").prepend(el);
  $("toolbar").hidden = false;
  const card = { el, file, id: null, job: null, viewer: null };
  el.querySelector(".job-cancel").addEventListener("click", () => cancel(card));
  return card;
}

async function poll(card) {
  while (card.id && state.jobs.has(card.id)) {
    let job;
    try { job = await api(`/api/jobs/${card.id}`); } catch (err) {
      render(card, { ...(card.job || {}), state: "failed", error: err.message });
      return;
    }
    render(card, job);
    if (["done", "failed", "cancelled"].includes(job.state)) return;
    await new Promise((r) => setTimeout(r, 400));
  }
}

function render(card, job) {
  const previous = card.job ? card.job.state : null;
  card.job = job;
  const el = card.el;
  el.className = `job ${job.state}`;
  const pct = Math.round((job.progress || 0) * 100);
  let label = job.state;
  if (job.state === "running") label = `running ${pct}%` + (job.eta_seconds != null ? ` — about ${formatSeconds(job.eta_seconds)} left` : "");
  if (job.state === "done") label = `done in ${formatSeconds(job.seconds)}`;
  el.querySelector(".job-state").textContent = label;
  el.querySelector(".bar-fill").style.width = `${pct}%`;
  el.querySelector(".job-error").textContent = job.error || "";
  const info = [];
  if (job.result_size) info.push(`${job.result_name}: ${job.result_size[0]} × ${job.result_size[1]} px`);
  if (job.notes && job.notes.length) info.push(...job.notes);
  el.querySelector(".job-info").textContent = info.join(" · ");
  el.querySelector(".job-cancel").textContent = ["queued", "running"].includes(job.state) ? "Cancel" : "Remove";
  if (job.state === "done" && previous !== "done") showResult(card);
}

async function cancel(card) {
  if (!card.id) { card.el.remove(); return; }
  const running = card.job && ["queued", "running"].includes(card.job.state);
  try {
    const job = await api(`/api/jobs/${card.id}`, { method: "DELETE" });
    if (running) { render(card, job); return; }
  } catch (_) { /* already gone */ }
  state.jobs.delete(card.id);
  if (card.viewer) card.viewer.dispose();
  card.el.remove();
}

// ------------------------------------------------------------------------------------------ viewer

const VIDEO_RESULT = /\.(mp4|m4v|mov|mkv|webm)$/i;

function showResult(card) {
  const el = card.el;
  const url = `/api/jobs/${card.id}/result`;
  if (VIDEO_RESULT.test(card.job.result_name)) {
    // A video: played from the server's file as it is (a before/after slider is for still pictures).
    const box = el.querySelector(".video-result");
    const link = box.querySelector(".download");
    link.href = url;
    link.download = card.job.result_name;
    box.querySelector("video").src = url;
    box.hidden = false;
    return;
  }
  const link = el.querySelector(".viewer .download");
  link.href = url;
  link.download = card.job.result_name;
  el.querySelector(".viewer").hidden = false;
  card.viewer = new Viewer(el.querySelector(".viewer"), URL.createObjectURL(card.file), url, card.job.result_size);
}

class Viewer {
  // One zoom and one pan for both images, so that the same spot is under the slider on each side.
  constructor(root, beforeUrl, afterUrl, size) {
    this.root = root;
    this.stage = root.querySelector(".stage");
    this.before = root.querySelector(".img-before");
    this.after = root.querySelector(".img-after");
    this.beforeLayer = root.querySelector(".layer.before");
    this.divider = root.querySelector(".divider");
    this.slider = root.querySelector(".slider");
    this.beforeUrl = beforeUrl;
    this.width = size[0];
    this.height = size[1];
    this.zoom = 1; this.x = 0; this.y = 0; this.fitted = false;
    this.before.src = beforeUrl;
    this.after.src = afterUrl;
    this.after.addEventListener("load", () => this.fit());
    this.slider.addEventListener("input", () => this.split());
    root.querySelector(".zoom-in").addEventListener("click", () => this.zoomAt(1.5));
    root.querySelector(".zoom-out").addEventListener("click", () => this.zoomAt(1 / 1.5));
    root.querySelector(".zoom-reset").addEventListener("click", () => this.fit());
    this.stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.stage.getBoundingClientRect();
      this.zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    this.stage.addEventListener("pointerdown", (e) => {
      this.drag = { x: e.clientX, y: e.clientY, ox: this.x, oy: this.y };
      this.stage.setPointerCapture(e.pointerId);
      this.stage.classList.add("dragging");
    });
    this.stage.addEventListener("pointermove", (e) => {
      if (!this.drag) return;
      this.x = this.drag.ox + e.clientX - this.drag.x;
      this.y = this.drag.oy + e.clientY - this.drag.y;
      this.apply();
    });
    const end = () => { this.drag = null; this.stage.classList.remove("dragging"); };
    this.stage.addEventListener("pointerup", end);
    this.stage.addEventListener("pointercancel", end);
    this.fit();
    this.split();
  }

  fit() {
    const w = this.stage.clientWidth || 800, h = this.stage.clientHeight || 500;
    this.zoom = Math.min(w / this.width, h / this.height, 1);
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
    for (const img of [this.before, this.after]) {
      // The original is stretched to the result's size: both sides show the same region at the same size.
      img.style.width = `${this.width * this.zoom}px`;
      img.style.height = `${this.height * this.zoom}px`;
      img.style.transform = `translate(${this.x}px, ${this.y}px)`;
    }
    this.root.querySelector(".zoom-level").textContent = `${Math.round(this.zoom * 100)}%`;
  }

  split() {
    const p = Number(this.slider.value);
    this.beforeLayer.style.clipPath = `inset(0 ${100 - p}% 0 0)`;
    this.divider.style.left = `calc(${p}% - 1px)`;
  }

  dispose() { URL.revokeObjectURL(this.beforeUrl); }
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
  drop.addEventListener("click", (e) => { if (e.target === drop || e.target.tagName === "P") $("files").click(); });
  $("files").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  document.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (files.length) addFiles(files);
  });
  $("model").addEventListener("change", onModelChange);
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
    for (const card of [...state.jobs.values()]) {
      if (card.job && ["done", "failed", "cancelled"].includes(card.job.state)) cancel(card);
    }
  });
}

wire();
loadSettings();
