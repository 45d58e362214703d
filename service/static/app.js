/* Re-ID operator console: plain JavaScript, no build step, no network access beyond this service.
 *
 * Every API call sends the key from localStorage in the X-API-Key header. Images are fetched with that header
 * and shown through blob: URLs. Times are shown and entered in UTC (the API takes a time without offset as UTC).
 */
"use strict";

const KEY_STORAGE = "reid.apiKey";
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22"];

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/* ------------------------------------------------------------------------------------------------ API */

class ApiError extends Error {
  constructor(status, code, message, field, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.body = body;
  }
}

function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    return "";
  }
}

function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch (_) {
    /* storage disabled: the key lives only in the input field */
  }
}

function currentKey() {
  return getKey() || $("#api-key").value.trim();
}

/** fetch with the key; JSON body on success, ApiError with the service's plain-words message otherwise. */
async function api(path, options = {}) {
  const key = currentKey();
  if (!key) throw new ApiError(0, "no_key", "Enter an API key first (top right).", null, null);
  const headers = Object.assign({ "X-API-Key": key }, options.headers || {});
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new ApiError(0, "network", "Could not reach the service. Is it running? (" + err.message + ")", null, null);
  }
  if (response.ok) {
    if (options.raw) return response;
    return response.json();
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    /* not JSON */
  }
  const error = body && body.error ? body.error : null;
  let message = error && error.message ? error.message : "The service answered " + response.status + " " +
    (response.statusText || "") + ".";
  if (response.status === 401) message = "The API key was refused: " + message;
  else if (response.status === 403) message = "This key is not allowed to do that: " + message;
  throw new ApiError(response.status, error ? error.code : "http_" + response.status, message,
                     error ? error.field : null, body);
}

function onAuthFailure(err) {
  if (err.status === 401) {
    showKeyStatus("Key refused", "bad");
  }
}

/* ------------------------------------------------------------------------------------------------ helpers */

function showError(testid, err) {
  const box = $(`[data-testid="${testid}"]`);
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = err.message || String(err);
  box.dataset.code = err.code || "";
  box.dataset.field = err.field || "";
  box.hidden = false;
  if (err instanceof ApiError) onAuthFailure(err);
}

function showKeyStatus(text, kind) {
  const status = $("#key-status");
  status.textContent = text;
  status.dataset.state = kind || "";
}

/** "2026-11-23T10:00:00+00:00" -> "2026-11-23 10:00:00 UTC" */
function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") + " UTC";
}

/** Date -> value for <input type="datetime-local" step="1"> in UTC. */
function toInputValue(date) {
  return date.toISOString().slice(0, 19);
}

/** <input type="datetime-local"> value (UTC by convention) -> ISO string with explicit UTC offset, or "". */
function fromInputValue(value) {
  if (!value) return "";
  const withSeconds = value.length === 16 ? value + ":00" : value;
  return withSeconds + "+00:00";
}

function selectedCameras(form) {
  return $$('input[name="camera_id"]:checked', form).map((box) => box.value);
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute("aria-busy", busy ? "true" : "false");
}

/* ------------------------------------------------------------------------------------------------ thumbnails */

const blobUrls = { results: [], gallery: [], query: [], detail: [] };

function releaseBlobs(group) {
  for (const url of blobUrls[group]) URL.revokeObjectURL(url);
  blobUrls[group] = [];
}

/** Load an image through fetch (the key is a header, so <img src> cannot load it directly). */
async function loadThumbnail(img, url, group) {
  try {
    const response = await api(url, { raw: true });
    const objectUrl = URL.createObjectURL(await response.blob());
    blobUrls[group].push(objectUrl);
    img.src = objectUrl;
    img.dataset.loaded = "true";
  } catch (err) {
    img.dataset.loaded = "false";
    img.alt = img.alt + " (image unavailable: " + err.message + ")";
  }
}

/** A card for a hit or a gallery item: the picture opens the detail view; "Search from this" searches. */
function itemCard(item, group, extra) {
  const label = `Gallery item ${item.id}, camera ${item.camera_id}, ${formatTime(item.captured_at)}`;
  const img = el("img", { alt: label, width: 80, height: 160, loading: "lazy" });
  const button = el("button", { type: "button", class: "hit-button", title: "Show details",
                                "data-testid": "open-detail", "aria-label": "Details of " + label }, img);
  button.addEventListener("click", () => openDetail(item));
  const searchFrom = el("button", { type: "button", class: "link", "data-testid": "search-from",
                                    text: "Search from this" });
  searchFrom.addEventListener("click", () => searchFromGalleryItems([item.id]));
  const meta = el("div", { class: "meta" });
  if (extra) meta.append(extra);
  meta.append(
    el("span", { class: "camera", "data-testid": "hit-camera", text: item.camera_id }),
    el("time", { datetime: item.captured_at, "data-testid": "hit-time", text: formatTime(item.captured_at) }),
    el("span", { class: "small", text: `#${item.id}` + (item.visitor_id != null ? ` · visitor ${item.visitor_id}` : "") }),
    searchFrom,
  );
  loadThumbnail(img, item.thumbnail_url, group);
  return [button, meta];
}

/* ------------------------------------------------------------------------------------------------ cameras */

let knownCameras = [];

async function refreshCameras() {
  const data = await api("/cameras");
  knownCameras = data.cameras || [];
  for (const container of $$("[data-camera-list]")) {
    const form = container.closest("form");
    const ticked = new Set(selectedCameras(form));
    clear(container);
    if (!knownCameras.length) container.append(el("span", { class: "hint", text: "no cameras yet" }));
    for (const camera of knownCameras) {
      const box = el("input", { type: "checkbox", name: "camera_id", value: camera.camera_id,
                                checked: ticked.has(camera.camera_id) });
      container.append(el("label", { class: "check", title: `${camera.items} photos` }, box, " " + camera.camera_id));
    }
  }
  const choices = $("#camera-choices");
  clear(choices);
  for (const camera of knownCameras) choices.append(el("option", { value: camera.camera_id }));
  return knownCameras;
}

/* ------------------------------------------------------------------------------------------------ search */

/** What the operator is looking at: the query, the hits, and their verdicts on hits (id -> "same" | "other"). */
const searchState = { files: [], galleryIds: [], hits: [], verdicts: new Map(), items: new Map() };

function searchFilters(form, body) {
  for (const camera of selectedCameras(form)) body.append("camera_id", camera);
  const start = fromInputValue($("#search-start").value);
  const end = fromInputValue($("#search-end").value);
  if (start) body.append("start", start);
  if (end) body.append("end", end);
}

/** POST /search from photos and/or stored items; shows the query beside the results. */
async function runQuery(files, galleryIds) {
  const form = $("#search-form");
  const button = $("#search-submit");
  showError("search-error", null);
  if (files.length > 8) {
    showError("search-error", new Error("Choose at most 8 query photos of one person."));
    return;
  }
  if (!files.length && !galleryIds.length) {
    showError("search-error", new Error("Choose a query photo, or give a gallery item number."));
    return;
  }
  const body = new FormData();
  for (const file of files) body.append("files", file, file.name);
  for (const id of galleryIds) body.append("gallery_id", String(id));
  body.append("top_k", $("#search-top-k").value || "20");
  const minScore = $("#search-min-score").value;
  if (minScore !== "") body.append("min_score", minScore);
  searchFilters(form, body);

  setBusy(button, true);
  $("#search-summary").textContent = "Searching…";
  try {
    const data = await api("/search", { method: "POST", body });
    const keep = new Map([...searchState.verdicts].filter(([id]) => galleryIds.includes(id)));
    Object.assign(searchState, { files, galleryIds, hits: data.hits || [], verdicts: keep });
    for (const hit of searchState.hits) searchState.items.set(hit.id, hit);
    renderQuery();
    renderResults();
  } catch (err) {
    releaseBlobs("results");
    clear($("#results"));
    $("#search-summary").textContent = "The search failed.";
    showError("search-error", err);
  } finally {
    setBusy(button, false);
  }
}

function runSearch(event) {
  if (event) event.preventDefault();
  const files = Array.from($("#search-files").files);
  const typed = $("#search-gallery-id").value.trim();
  const ids = typed ? typed.split(/[\s,]+/).filter(Boolean).map(Number) : [];
  if (ids.some((id) => !Number.isInteger(id) || id < 1)) {
    showError("search-error", new Error("Gallery item numbers are whole numbers from 1, separated by commas."));
    return Promise.resolve();
  }
  return runQuery(files, ids);
}

function querySource() {
  const parts = [];
  const n = searchState.files.length;
  const m = searchState.galleryIds.length;
  if (n) parts.push(`${n} query photo${n > 1 ? "s" : ""}`);
  if (m === 1) parts.push(`gallery item ${searchState.galleryIds[0]}`);
  else if (m > 1) parts.push(`${m} gallery items`);
  return parts.join(" and ");
}

/** The query photos (local files) and stored items, shown beside the results. */
function renderQuery() {
  const strip = $("#query-strip");
  releaseBlobs("query");
  clear(strip);
  for (const file of searchState.files) {
    const url = URL.createObjectURL(file);
    blobUrls.query.push(url);
    strip.append(el("li", { class: "query-item", "data-testid": "query-item", dataset: { kind: "photo" } },
                    el("img", { src: url, alt: "query photo " + file.name, width: 80, height: 160 }),
                    el("span", { class: "small", text: file.name })));
  }
  for (const id of searchState.galleryIds) {
    const img = el("img", { alt: `query: gallery item ${id}`, width: 80, height: 160 });
    const known = searchState.items.get(id);
    strip.append(el("li", { class: "query-item", "data-testid": "query-item", dataset: { kind: "item", id } },
                    img, el("span", { class: "small", text: `#${id}` + (known ? ` · ${known.camera_id}` : "") })));
    loadThumbnail(img, `/gallery/${id}/image?size=thumb`, "query");
  }
  $("#query-card").hidden = strip.children.length === 0;
}

function verdictButtons(hit) {
  const verdict = searchState.verdicts.get(hit.id) || "";
  const same = el("button", { type: "button", class: "verdict same", "data-testid": "confirm-hit",
                              "aria-pressed": verdict === "same" ? "true" : "false", text: "✓ Same person" });
  const other = el("button", { type: "button", class: "verdict other", "data-testid": "reject-hit",
                               "aria-pressed": verdict === "other" ? "true" : "false", text: "✗ Not this person" });
  same.addEventListener("click", () => setVerdict(hit.id, verdict === "same" ? "" : "same"));
  other.addEventListener("click", () => setVerdict(hit.id, verdict === "other" ? "" : "other"));
  return el("div", { class: "verdicts" }, same, other);
}

function setVerdict(id, verdict) {
  if (verdict) searchState.verdicts.set(id, verdict);
  else searchState.verdicts.delete(id);
  renderResults();
  const dialog = $("#detail");
  if (dialog.open && Number(dialog.dataset.id) === id) renderDetailVerdict(searchState.items.get(id));
}

function confirmedIds() {
  return [...searchState.verdicts].filter(([, v]) => v === "same").map(([id]) => id);
}

function renderResults() {
  const list = $("#results");
  releaseBlobs("results");
  clear(list);
  const hits = searchState.hits;
  const source = querySource();
  $("#search-summary").textContent = hits.length ?
    `${hits.length} hit${hits.length > 1 ? "s" : ""} for ${source}, best first.` :
    `No match for ${source} with these filters.`;
  for (const hit of hits) {
    const score = el("span", { class: "score", "data-testid": "hit-score", text: Number(hit.score).toFixed(3),
                               title: "cosine similarity (1 = identical)" });
    const rank = el("span", { class: "rank", text: `${hit.rank}.` });
    const [button, meta] = itemCard(hit, "results", el("span", {}, rank, " ", score));
    meta.append(verdictButtons(hit));
    const verdict = searchState.verdicts.get(hit.id) || "none";
    list.append(el("li", { class: "hit", "data-testid": "hit",
                           dataset: { id: hit.id, score: hit.score, camera: hit.camera_id, verdict } },
                   button, meta));
  }
  const confirmed = confirmedIds();
  const rejected = [...searchState.verdicts.values()].filter((v) => v === "other").length;
  $("#confirmed-summary").textContent = confirmed.length || rejected ?
    `${confirmed.length} confirmed as the same person, ${rejected} ruled out.` :
    "Mark hits as the same person (✓) or not (✗), then search again from the confirmed set.";
  $("#confirmed-count").textContent = String(confirmed.length);
  $("#search-confirmed").disabled = confirmed.length === 0;
  renderSightings();
}

/** Search again from the confirmed hits (plus the query's own photos and items). */
function searchFromConfirmed() {
  const ids = [...new Set([...searchState.galleryIds, ...confirmedIds()])];
  $("#search-gallery-id").value = ids.join(", ");
  return runQuery(searchState.files, ids);
}

function searchFromGalleryItems(ids) {
  $("#search-files").value = "";
  $("#search-gallery-id").value = ids.join(", ");
  closeDetail();
  selectTab("search");
  return runQuery([], ids);
}

/* -------------------------------------------------------------------------------- where was this person seen */

/** Confirmed hits when there are any, otherwise every hit not ruled out; grouped per camera, latest first. */
function sightingsToShow() {
  const confirmed = new Set(confirmedIds());
  const pool = confirmed.size ? searchState.hits.filter((h) => confirmed.has(h.id)) :
    searchState.hits.filter((h) => searchState.verdicts.get(h.id) !== "other");
  return { basis: confirmed.size ? "confirmed" : "hits", sightings: pool };
}

function renderSightings() {
  const section = $("#sightings-section");
  const { basis, sightings } = sightingsToShow();
  section.hidden = sightings.length === 0;
  const timeline = $("#sightings-timeline");
  const groups = $("#sightings-groups");
  clear(timeline);
  clear(groups);
  if (!sightings.length) return;
  const time = (h) => Date.parse(h.captured_at);
  const sorted = [...sightings].sort((a, b) => time(b) - time(a));
  const last = sorted[0];
  $("#sightings-basis").textContent = basis === "confirmed" ?
    `From the ${sightings.length} confirmed sighting${sightings.length > 1 ? "s" : ""}.` :
    `From all ${sightings.length} hits not ruled out (confirm hits to narrow this down).`;
  $("#last-seen").textContent = `Last seen: ${formatTime(last.captured_at)} on camera ${last.camera_id}` +
    ` (item #${last.id}, score ${Number(last.score).toFixed(3)}).`;

  // cameras ordered by their latest sighting, latest first
  const byCamera = new Map();
  for (const hit of sorted) {
    if (!byCamera.has(hit.camera_id)) byCamera.set(hit.camera_id, []);
    byCamera.get(hit.camera_id).push(hit);
  }
  const cameras = [...byCamera.keys()];

  // the time line: one lane per camera over the span of the sightings
  const t0 = Math.min(...sightings.map(time));
  const t1 = Math.max(...sightings.map(time));
  const span = Math.max(t1 - t0, 60 * 1000);
  const width = 1000;
  const lane = 28;
  const pad = { left: 110, right: 20, top: 8, bottom: 26 };
  const height = pad.top + lane * cameras.length + pad.bottom;
  const x = (t) => pad.left + ((t - t0) / span) * (width - pad.left - pad.right);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-testid": "sightings-svg",
                            "aria-label": `Sightings on ${cameras.length} cameras over time` });
  cameras.forEach((camera, row) => {
    const y = pad.top + row * lane + lane / 2;
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "lane" }));
    const label = svg("text", { x: pad.left - 8, y: y + 4, "text-anchor": "end", class: "tick" });
    label.textContent = camera;
    root.append(label);
    for (const hit of byCamera.get(camera)) {
      const isLast = hit === last;
      const mark = svg("circle", { cx: x(time(hit)).toFixed(1), cy: y, r: isLast ? 9 : 6,
                                   class: isLast ? "mark last" : "mark", "data-testid": "sighting-mark",
                                   "data-id": hit.id, "data-camera": camera });
      const title = svg("title");
      title.textContent = `${camera}, ${formatTime(hit.captured_at)}, score ${Number(hit.score).toFixed(3)}` +
        (isLast ? " (last sighting)" : "");
      mark.append(title);
      mark.addEventListener("click", () => openDetail(hit));
      root.append(mark);
    }
  });
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = svg("text", { x: x(t), y: height - 6, "text-anchor": anchor, class: "tick" });
    label.textContent = formatTime(new Date(t).toISOString());
    root.append(label);
  }
  timeline.append(root);

  for (const camera of cameras) {
    const items = byCamera.get(camera);
    const list = el("ol", { class: "sighting-list" });
    for (const hit of items) {
      const isLast = hit === last;
      const entry = el("li", { class: isLast ? "sighting last" : "sighting", "data-testid": isLast ? "last-sighting" : "sighting",
                               dataset: { id: hit.id, camera } });
      const open = el("button", { type: "button", class: "link", text: formatTime(hit.captured_at) });
      open.addEventListener("click", () => openDetail(hit));
      entry.append(open, ` · #${hit.id} · score ${Number(hit.score).toFixed(3)}` + (isLast ? " · last sighting" : ""));
      list.append(entry);
    }
    groups.append(el("section", { class: "camera-group", "data-testid": "sighting-group", dataset: { camera } },
                     el("h3", { text: `Camera ${camera} (${items.length})` }), list));
  }
}

/* ------------------------------------------------------------------------------------------------ detail view */

async function openDetail(item) {
  const dialog = $("#detail");
  dialog.dataset.id = String(item.id);
  releaseBlobs("detail");
  const img = $("#detail-image");
  img.removeAttribute("src");
  img.alt = `Gallery item ${item.id}, full image`;
  $("#detail-title").textContent = `Gallery item #${item.id}`;
  const facts = $("#detail-facts");
  clear(facts);
  const addFact = (label, value, testid) => {
    facts.append(el("div", {}, el("dt", { text: label }), el("dd", { "data-testid": testid, text: value })));
  };
  addFact("Camera", item.camera_id, "detail-camera");
  addFact("Captured", formatTime(item.captured_at), "detail-time");
  addFact("Visitor", item.visitor_id != null ? String(item.visitor_id) : "—", "detail-visitor");
  addFact("Track / reference", item.external_ref || "—", "detail-track");
  if (item.score != null) addFact("Score", Number(item.score).toFixed(3), "detail-score");
  renderDetailVerdict(item);
  if (!dialog.open) dialog.showModal();
  loadThumbnail(img, item.image_url || `/gallery/${item.id}/image`, "detail");
  if (item.width == null) {  // a hit: fetch the item's size and (for gallery items) anything missing
    try {
      const full = await api(`/gallery/${item.id}`);
      if (Number(dialog.dataset.id) === item.id) {
        addFact("Size", `${full.width} × ${full.height} px`, "detail-size");
      }
    } catch (_) {
      /* the facts above are enough */
    }
  } else {
    addFact("Size", `${item.width} × ${item.height} px`, "detail-size");
  }
}

function renderDetailVerdict(item) {
  const box = $("#detail-verdict");
  clear(box);
  if (!item || !searchState.hits.some((h) => h.id === item.id)) return;
  box.append(verdictButtons(item));
}

function closeDetail() {
  const dialog = $("#detail");
  if (dialog.open) dialog.close();
  releaseBlobs("detail");
}

/* ------------------------------------------------------------------------------------------------ gallery */

const GALLERY_PAGE = 48;
let galleryOffset = 0;

async function browseGallery(offset = 0) {
  const form = $("#search-form");
  const section = $("#gallery-section");
  showError("search-error", null);
  const params = new URLSearchParams({ limit: String(GALLERY_PAGE), offset: String(Math.max(0, offset)) });
  for (const camera of selectedCameras(form)) params.append("camera_id", camera);
  const start = fromInputValue($("#search-start").value);
  const end = fromInputValue($("#search-end").value);
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  try {
    const data = await api("/gallery?" + params.toString());
    galleryOffset = data.offset;
    const list = $("#gallery");
    releaseBlobs("gallery");
    clear(list);
    section.hidden = false;
    const first = data.items.length ? data.offset + 1 : 0;
    const lastShown = data.offset + data.items.length;
    $("#gallery-summary").textContent = data.items.length ?
      `Photos ${first}–${lastShown} of ${data.total}.` : `No photos here (${data.total} match the filters).`;
    $("#gallery-prev").disabled = data.offset === 0;
    $("#gallery-next").disabled = lastShown >= data.total;
    const pages = Math.max(1, Math.ceil(data.total / GALLERY_PAGE));
    $("#gallery-page").textContent = `page ${Math.floor(data.offset / GALLERY_PAGE) + 1} of ${pages}`;
    for (const item of data.items) {
      searchState.items.set(item.id, item);
      const [button, meta] = itemCard(item, "gallery", null);
      list.append(el("li", { class: "hit", "data-testid": "gallery-item", dataset: { id: item.id } }, button, meta));
    }
  } catch (err) {
    showError("search-error", err);
  }
}

/* ------------------------------------------------------------------------------------------------ live watches */

const watchStreams = new Map(); // watch id -> AbortController of its event stream

/** POST /watches from the current query (photos, items, confirmed hits) and the ticked cameras. */
async function createWatch() {
  showError("watch-error", null);
  const ids = [...new Set([...searchState.galleryIds, ...confirmedIds()])];
  if (!searchState.files.length && !ids.length) {
    showError("watch-error", new Error("Search for the person first: the watch uses that query."));
    return;
  }
  const body = new FormData();
  for (const file of searchState.files) body.append("files", file, file.name);
  for (const id of ids) body.append("gallery_id", String(id));
  body.append("threshold", $("#watch-threshold").value || "0.8");
  const hours = Number($("#watch-hours").value || "2");
  body.append("expires_at", new Date(Date.now() + hours * 3600 * 1000).toISOString());
  for (const camera of selectedCameras($("#search-form"))) body.append("camera_id", camera);
  const button = $("#watch-create");
  setBusy(button, true);
  try {
    const watch = await api("/watches", { method: "POST", body });
    await refreshWatches();
    listenToWatch(watch.id);
  } catch (err) {
    showError("watch-error", err);
  } finally {
    setBusy(button, false);
  }
}

async function refreshWatches() {
  const data = await api("/watches");
  const list = $("#watch-list");
  clear(list);
  for (const watch of data.watches.filter((w) => w.state === "active")) {
    const stop = el("button", { type: "button", class: "secondary", "data-testid": "watch-stop", text: "Stop" });
    stop.addEventListener("click", async () => {
      await api(`/watches/${watch.id}`, { method: "DELETE" }).catch((err) => showError("watch-error", err));
      const stream = watchStreams.get(watch.id);
      if (stream) stream.abort();
      watchStreams.delete(watch.id);
      refreshWatches().catch(() => {});
    });
    const cameras = watch.camera_id ? watch.camera_id.join(", ") : "all cameras";
    list.append(el("li", { "data-testid": "watch", dataset: { id: watch.id } },
                   el("strong", { text: `Watch #${watch.id}` }),
                   `score ≥ ${watch.threshold}, ${cameras}, until ${formatTime(watch.expires_at)}, ` +
                   `${watch.matches} match${watch.matches === 1 ? "" : "es"}` +
                   (watchStreams.has(watch.id) ? " · listening" : ""), stop));
    if (!watchStreams.has(watch.id)) listenToWatch(watch.id);
  }
}

/** GET /watches/{id}/events through fetch (EventSource cannot send the key header); one alert per match. */
async function listenToWatch(id, lastId = null) {
  if (watchStreams.has(id) && lastId === null) return;
  const controller = new AbortController();
  watchStreams.set(id, controller);
  let last = lastId;
  try {
    const headers = last !== null ? { "Last-Event-ID": String(last) } : {};
    const response = await api(`/watches/${id}/events`, { raw: true, headers, signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data) continue;
        const match = JSON.parse(data);
        last = match.id;
        showWatchAlert(match);
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  if (!controller.signal.aborted) setTimeout(() => listenToWatch(id, last), 3000); // reconnect, no match lost
}

function beep() {
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  try {
    const audio = new (window.AudioContext || window.webkitAudioContext)();
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.value = 0.2;
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.4);
  } catch (_) {
    /* no audio device: the visible alert stays */
  }
}

function showWatchAlert(match) {
  const img = el("img", { alt: `sighting: gallery item ${match.item_id}` });
  const open = el("button", { type: "button", class: "link", text: "Details" });
  open.addEventListener("click", () => openDetail({ id: match.item_id, camera_id: match.camera_id,
                                                     captured_at: match.captured_at, score: match.score,
                                                     image_url: match.image_url }));
  const alert = el("div", { class: "watch-alert", role: "alert", "data-testid": "watch-alert",
                            dataset: { watch: match.watch_id, item: match.item_id } },
                   img, el("span", { text: `Watch #${match.watch_id}: seen on camera ${match.camera_id} at ` +
                                          `${formatTime(match.captured_at)} (score ${Number(match.score).toFixed(3)}).` }),
                   open);
  $("#watch-alerts").prepend(alert);
  loadThumbnail(img, match.thumbnail_url, "query");
  beep();
  document.title = "● Seen again · Re-ID console";
}

/* ------------------------------------------------------------------------------------------------ footfall */

let footfallRequests = 0;

function footfallParams(form) {
  const params = new URLSearchParams({
    start: fromInputValue($("#footfall-start").value),
    end: fromInputValue($("#footfall-end").value),
    bucket: $("#footfall-bucket").value.trim(),
  });
  for (const camera of selectedCameras(form)) params.append("camera_id", camera);
  return params;
}

async function runFootfall(event) {
  if (event) event.preventDefault();
  const form = $("#footfall-form");
  const button = $("#footfall-submit");
  showError("footfall-error", null);
  if (!form.reportValidity()) return;
  const params = footfallParams(form);
  footfallOpened = true;
  const request = ++footfallRequests;
  setBusy(button, true);
  try {
    const data = await api("/metrics?" + params.toString());
    if (request === footfallRequests) renderFootfall(data); // an older answer never replaces a newer one
  } catch (err) {
    showError("footfall-error", err);
  } finally {
    setBusy(button, false);
  }
}

/** Set the footfall window to the recorded span; unless `force`, only when the operator left both fields empty. */
function applyRecordedSpan(cameras, force) {
  if (!cameras.length) return false;
  const startInput = $("#footfall-start");
  const endInput = $("#footfall-end");
  if (!force && (startInput.value || endInput.value)) return true;
  const first = Math.min(...cameras.map((c) => Date.parse(c.first_seen)));
  const last = Math.max(...cameras.map((c) => Date.parse(c.last_seen)));
  const hour = 3600 * 1000;
  startInput.value = toInputValue(new Date(Math.floor(first / hour) * hour));
  endInput.value = toInputValue(new Date(Math.floor(last / hour) * hour + hour));
  return true;
}

/** The last day with sightings (24 h up to the hour after the latest one), hourly; false when nothing is recorded. */
function applyLastDay(cameras) {
  if (!cameras.length) return false;
  const hour = 3600 * 1000;
  const last = Math.max(...cameras.map((c) => Date.parse(c.last_seen)));
  const end = Math.floor(last / hour) * hour + hour;
  $("#footfall-start").value = toInputValue(new Date(end - 24 * hour));
  $("#footfall-end").value = toInputValue(new Date(end));
  $("#footfall-bucket").value = "1h";
  return true;
}

let footfallOpened = false;

/** Opening the footfall view shows the last day at once (unless the operator already chose a window). */
async function openFootfall() {
  if (footfallOpened || !currentKey()) return;
  footfallOpened = true;
  if (!$("#footfall-start").value && !$("#footfall-end").value) {
    try {
      const cameras = await refreshCameras();
      if ($("#footfall-start").value || $("#footfall-end").value) return; // the operator chose meanwhile
      if (!applyLastDay(cameras)) return;
    } catch (err) {
      showError("footfall-error", err);
      footfallOpened = false;
      return;
    }
  }
  runFootfall();
}

/** GET /metrics?format=csv for the window shown, saved as a file. */
async function exportFootfallCsv() {
  const form = $("#footfall-form");
  showError("footfall-error", null);
  if (!form.reportValidity()) return;
  const params = footfallParams(form);
  params.set("format", "csv");
  try {
    const response = await api("/metrics?" + params.toString(), { raw: true });
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (disposition.match(/filename="([^"]+)"/) || [null, "footfall.csv"])[1];
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showError("footfall-error", err);
  }
}

async function fillWholeSpan() {
  showError("footfall-error", null);
  try {
    if (applyRecordedSpan(await refreshCameras(), true)) return true;
    showError("footfall-error", new Error("Nothing recorded yet: the gallery is empty."));
  } catch (err) {
    showError("footfall-error", err);
  }
  return false;
}

/** Group series rows as {buckets: [start...], cameras: [...], value(camera, bucketIndex)}.
 *  The series is sparse (only cells with sightings); every bucket comes from totals.by_bucket, and a cell
 *  without a row is 0, so the chart and table still show the empty buckets. */
function footfallMatrix(data) {
  const buckets = ((data.totals && data.totals.by_bucket) || []).map((b) => b.bucket_start);
  const cells = new Map();
  for (const row of data.series || []) cells.set(row.camera_id + "\u0000" + row.bucket_start, row);
  const cameras = data.cameras && data.cameras.length ? data.cameras :
    Array.from(new Set((data.series || []).map((r) => r.camera_id)));
  const value = (camera, i) => {
    const row = cells.get(camera + "\u0000" + buckets[i]);
    return row ? row.unique_visitors : 0;
  };
  return { buckets, cameras, value };
}

function bucketLabel(iso, bucketSeconds) {
  const text = formatTime(iso).replace(" UTC", ""); // "YYYY-MM-DD HH:MM:SS"
  return bucketSeconds >= 86400 ? text.slice(0, 10) : text.slice(5, 16);
}

function renderFootfall(data) {
  const { buckets, cameras, value } = footfallMatrix(data);
  const totals = data.totals || { sightings: 0, unique_visitors: 0, by_camera: {}, by_bucket: [] };
  const colour = (i) => PALETTE[i % PALETTE.length];

  // Totals
  const dl = $("#footfall-totals");
  clear(dl);
  const addTotal = (label, val, testid) => {
    dl.append(el("div", {}, el("dt", { text: label }), el("dd", { "data-testid": testid, text: String(val) })));
  };
  addTotal("Unique visitors", totals.unique_visitors, "total-unique");
  addTotal("Sightings", totals.sightings, "total-sightings");
  for (const camera of cameras) {
    const c = (totals.by_camera || {})[camera] || { unique_visitors: 0 };
    const row = el("div", { "data-testid": "camera-total", dataset: { camera } },
                   el("dt", { text: "Camera " + camera }), el("dd", { text: String(c.unique_visitors) }));
    dl.append(row);
  }

  // Chart: grouped bars, one group per bucket, one bar per camera (a bar of height 0 for no visitors).
  const chart = $("#footfall-chart");
  clear(chart);
  const width = 1200;
  const height = 320;
  const pad = { left: 44, right: 16, top: 14, bottom: 46 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  let maxValue = 0;
  cameras.forEach((camera) => buckets.forEach((_, i) => { maxValue = Math.max(maxValue, value(camera, i)); }));
  const byBucketRows = new Map((totals.by_bucket || []).map((b) => [b.bucket_start, b]));
  const sightingsAt = (i) => (byBucketRows.get(buckets[i]) || { sightings: 0 }).sightings;
  const uniqueAt = (i) => (byBucketRows.get(buckets[i]) || { unique_visitors: 0 }).unique_visitors;
  buckets.forEach((_, i) => { maxValue = Math.max(maxValue, sightingsAt(i)); });
  const yMax = Math.max(1, maxValue);
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, (slot * 0.8) / Math.max(1, cameras.length));
  const x = (i) => pad.left + i * slot + slot * 0.1;
  const y = (v) => pad.top + plotH - (v / yMax) * plotH;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-testid": "footfall-svg",
                            "aria-label": `Unique visitors per ${data.bucket} bucket for ${cameras.length} cameras` });
  // y axis ticks (integers)
  const step = Math.max(1, Math.ceil(yMax / 5));
  for (let v = 0; v <= yMax; v += step) {
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
    label.textContent = String(v);
    root.append(label);
  }
  // x labels, at most ~8
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((b, i) => {
    if (i % every !== 0) return;
    const label = svg("text", { x: pad.left + i * slot, y: height - pad.bottom + 18, "text-anchor": "start",
                                class: "tick" });
    label.textContent = bucketLabel(b, data.bucket_seconds);
    root.append(label);
  });
  // the peak: the bucket with the most unique visitors over all cameras (the first of equals)
  let peak = -1;
  buckets.forEach((_, i) => { if (uniqueAt(i) > 0 && (peak < 0 || uniqueAt(i) > uniqueAt(peak))) peak = i; });
  const peakText = $("#footfall-peak");
  if (peak >= 0) {
    root.append(svg("rect", { x: (pad.left + peak * slot).toFixed(2), y: pad.top, width: slot.toFixed(2), height: plotH,
                              class: "peak", "data-testid": "peak", "data-bucket": buckets[peak] }));
    const end = byBucketRows.get(buckets[peak]).bucket_end;
    peakText.textContent = `Peak: ${formatTime(buckets[peak])} – ${formatTime(end).slice(11)}, ` +
      `${uniqueAt(peak)} unique visitor${uniqueAt(peak) === 1 ? "" : "s"}, ${sightingsAt(peak)} sightings.`;
    peakText.dataset.bucket = buckets[peak];
  } else {
    peakText.textContent = "No visitors in this window.";
    delete peakText.dataset.bucket;
  }
  cameras.forEach((camera, c) => {
    const group = svg("g", { "data-testid": "series", "data-camera": camera, fill: colour(c) });
    buckets.forEach((b, i) => {
      const v = value(camera, i);
      const bar = svg("rect", { x: (x(i) + c * barW).toFixed(2), y: y(v).toFixed(2), width: barW.toFixed(2),
                                height: (y(0) - y(v)).toFixed(2), "data-testid": "point", "data-camera": camera,
                                "data-bucket": b, "data-value": v });
      const title = svg("title");
      title.textContent = `${camera}, ${formatTime(b)}: ${v} unique visitor${v === 1 ? "" : "s"}`;
      bar.append(title);
      group.append(bar);
    });
    root.append(group);
  });
  // sightings over all cameras: a line over the bars
  if (buckets.length) {
    const cx = (i) => pad.left + i * slot + slot / 2;
    root.append(svg("polyline", { points: buckets.map((_, i) => `${cx(i).toFixed(1)},${y(sightingsAt(i)).toFixed(1)}`).join(" "),
                                  class: "sightings-line", "data-testid": "sightings-line" }));
    buckets.forEach((b, i) => {
      const dot = svg("circle", { cx: cx(i).toFixed(1), cy: y(sightingsAt(i)).toFixed(1), r: 3.5, class: "sightings-dot",
                                  "data-testid": "sightings-point", "data-bucket": b, "data-value": sightingsAt(i) });
      const title = svg("title");
      title.textContent = `${formatTime(b)}: ${sightingsAt(i)} sightings on all cameras`;
      dot.append(title);
      root.append(dot);
    });
  }
  root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: "axis" }));
  chart.append(root);
  if (!buckets.length) chart.append(el("p", { class: "hint", text: "No buckets in this window." }));

  const legend = $("#footfall-legend");
  clear(legend);
  cameras.forEach((camera, c) => {
    legend.append(el("span", { class: "legend-item" },
                     el("span", { class: "swatch", style: `background:${colour(c)}` }), " " + camera + " (unique visitors)"));
  });
  legend.append(el("span", { class: "legend-item" }, el("span", { class: "swatch line" }), " sightings, all cameras"));
  legend.append(el("span", { class: "legend-item" }, el("span", { class: "swatch peak" }), " peak"));

  // Table: bucket rows x camera columns (unique visitors), plus the all-camera unique count.
  const table = $("#footfall-table");
  clear(table);
  table.append(el("caption", { text: `Unique visitors per ${data.bucket} bucket (UTC)` }));
  const headRow = el("tr", {}, el("th", { scope: "col", text: "Bucket start" }));
  for (const camera of cameras) headRow.append(el("th", { scope: "col", text: camera }));
  headRow.append(el("th", { scope: "col", text: "All cameras" }));
  table.append(el("thead", {}, headRow));
  const byBucket = new Map((totals.by_bucket || []).map((b) => [b.bucket_start, b]));
  const tbody = el("tbody");
  buckets.forEach((b, i) => {
    const tr = el("tr", { "data-testid": "footfall-row", dataset: { bucket: b } },
                  el("th", { scope: "row", text: formatTime(b) }));
    for (const camera of cameras) {
      tr.append(el("td", { "data-testid": "cell", dataset: { camera }, text: String(value(camera, i)) }));
    }
    const all = byBucket.get(b);
    tr.append(el("td", { "data-testid": "cell-all", text: String(all ? all.unique_visitors : 0) }));
    tbody.append(tr);
  });
  table.append(tbody);
  const footRow = el("tr", {}, el("th", { scope: "row", text: "Whole window" }));
  for (const camera of cameras) {
    const c = (totals.by_camera || {})[camera] || { unique_visitors: 0 };
    footRow.append(el("td", { "data-testid": "total-cell", dataset: { camera }, text: String(c.unique_visitors) }));
  }
  footRow.append(el("td", { "data-testid": "total-cell-all", text: String(totals.unique_visitors) }));
  table.append(el("tfoot", {}, footRow));
}

/* ------------------------------------------------------------------------------------------------ ingest */

async function runIngest(event) {
  if (event) event.preventDefault();
  const form = $("#ingest-form");
  const button = $("#ingest-submit");
  showError("ingest-error", null);
  if (!form.reportValidity()) return;
  const files = Array.from($("#ingest-files").files);
  const body = new FormData();
  for (const file of files) body.append("files", file, file.name);
  body.append("camera_id", $("#ingest-camera").value.trim());
  body.append("captured_at", fromInputValue($("#ingest-captured-at").value));
  const ref = $("#ingest-ref").value.trim();
  if (ref) for (let i = 0; i < files.length; i += 1) body.append("external_ref", ref);
  setBusy(button, true);
  $("#ingest-summary").textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
  try {
    const data = await api("/gallery", { method: "POST", body });
    renderIngest(data, files);
    $("#ingest-files").value = "";
    refreshCameras().catch(() => {});
  } catch (err) {
    showError("ingest-error", err);
    if (err.body && Array.isArray(err.body.items)) renderIngest(err.body, files);
    else $("#ingest-summary").textContent = "Nothing was stored.";
  } finally {
    setBusy(button, false);
  }
}

function renderIngest(data, files) {
  const items = data.items || [];
  const count = (status) => items.filter((item) => item.status === status).length;
  const created = data.created != null ? data.created : count("created");
  const existing = data.existing != null ? data.existing : count("exists");
  const failed = data.failed != null ? data.failed : count("error");
  $("#ingest-summary").textContent = `${created} added, ${existing} already in the gallery, ${failed} failed.`;
  const table = $("#ingest-results");
  clear(table);
  table.append(el("thead", {}, el("tr", {}, ...["File", "Result", "Item", "Visitor", "Details"].map(
    (h) => el("th", { scope: "col", text: h })))));
  const tbody = el("tbody");
  for (const item of items) {
    const name = item.filename || (files[item.index] ? files[item.index].name : `#${item.index}`);
    const words = { created: "added", exists: "already there", error: "failed" }[item.status] || item.status;
    tbody.append(el("tr", { "data-testid": "ingest-row", dataset: { status: item.status } },
      el("td", { text: name }),
      el("td", { class: "status-" + item.status, text: words }),
      el("td", { text: item.id != null ? String(item.id) : "" }),
      el("td", { text: item.visitor_id != null ? String(item.visitor_id) : "" }),
      el("td", { text: item.error ? item.error.message : "" })));
  }
  table.append(tbody);
}

/* ------------------------------------------------------------------------------------------------ trust banner */

/** GET /readyz (no key needed) and show its warnings (random or collapsed weights, dev keys) above everything. */
async function refreshTrustBanner(attempt = 0) {
  const banner = $("#trust-banner");
  let data = null;
  try {
    const response = await fetch("/readyz");
    data = await response.json();
    if (response.status === 503 && attempt < 30) {
      setTimeout(() => refreshTrustBanner(attempt + 1), 2000);
      return;
    }
  } catch (_) {
    return; /* the API calls themselves will say that the service cannot be reached */
  }
  const warnings = (data && data.warnings) || [];
  clear(banner);
  banner.hidden = warnings.length === 0;
  for (const warning of warnings) {
    banner.append(el("p", { "data-testid": "trust-warning", dataset: { code: warning.code } },
                     el("strong", { text: "Warning: " }), warning.message));
  }
}

/* ------------------------------------------------------------------------------------------------ tabs, key */

function selectTab(name) {
  for (const tab of $$('[role="tab"]')) {
    const selected = tab.id === "tab-" + name;
    tab.setAttribute("aria-selected", selected ? "true" : "false");
    tab.tabIndex = selected ? 0 : -1;
    $("#" + tab.getAttribute("aria-controls")).hidden = !selected;
  }
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  if (name === "footfall") openFootfall();
}

async function checkKey() {
  if (!currentKey()) {
    showKeyStatus("No key yet", "");
    return;
  }
  showKeyStatus("Checking key…", "");
  try {
    await refreshCameras();
    showKeyStatus("Key accepted", "ok");
    if (!$("#panel-footfall").hidden) openFootfall();
    refreshWatches().catch(() => {});
  } catch (err) {
    if (err.status === 401) showKeyStatus("Key refused: " + err.message.replace(/^The API key was refused: /, ""), "bad");
    else if (err.status === 403) showKeyStatus("Key accepted (upload only)", "ok");
    else showKeyStatus(err.message, "bad");
  }
}

function init() {
  const keyInput = $("#api-key");
  keyInput.value = getKey();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(keyInput.value.trim());
    checkKey();
  });
  $("#forget-key").addEventListener("click", () => {
    setKey("");
    keyInput.value = "";
    showKeyStatus("No key yet", "");
  });

  const tabs = $$('[role="tab"]');
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab.id.replace("tab-", "")));
    tab.addEventListener("keydown", (event) => {
      const delta = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!delta) return;
      const next = tabs[(i + delta + tabs.length) % tabs.length];
      next.focus();
      selectTab(next.id.replace("tab-", ""));
    });
  });
  const initial = location.hash.replace("#", "");
  selectTab(["search", "footfall", "ingest"].includes(initial) ? initial : "search");

  $("#search-form").addEventListener("submit", runSearch);
  $("#gallery-browse").addEventListener("click", () => browseGallery(0));
  $("#gallery-prev").addEventListener("click", () => browseGallery(galleryOffset - GALLERY_PAGE));
  $("#gallery-next").addEventListener("click", () => browseGallery(galleryOffset + GALLERY_PAGE));
  $("#search-confirmed").addEventListener("click", searchFromConfirmed);
  $("#watch-create").addEventListener("click", createWatch);
  $("#detail-close").addEventListener("click", closeDetail);
  $("#detail-search").addEventListener("click", () => searchFromGalleryItems([Number($("#detail").dataset.id)]));
  $("#detail").addEventListener("close", () => releaseBlobs("detail"));
  $("#footfall-form").addEventListener("submit", runFootfall);
  $("#footfall-csv").addEventListener("click", exportFootfallCsv);
  $("#footfall-whole").addEventListener("click", async () => {
    if (await fillWholeSpan()) runFootfall();
  });
  $("#ingest-form").addEventListener("submit", runIngest);
  $("#ingest-now").addEventListener("click", () => { $("#ingest-captured-at").value = toInputValue(new Date()); });
  if (!$("#ingest-captured-at").value) $("#ingest-captured-at").value = toInputValue(new Date());

  checkKey();
  refreshTrustBanner();
}

document.addEventListener("DOMContentLoaded", init);
