// The station page: polls the JSON endpoints and draws counters, a defect-rate chart and the defect gallery.
// No libraries: the page must work on a line with no internet access.
"use strict";

const $ = (id) => document.getElementById(id);
let lastGalleryKey = "";
let endRefreshed = false;
// What the page last heard from the station, and when: the figures stay on screen when the station stops
// answering (its process killed, the network down, the run ended), marked as the last received.
const FINAL = new Set(["finished", "stopped", "lost", "error"]);
const CONTACT_LOST_MS = 3000;
let lastStatus = null, lastContact = 0, lastItems = -1, lastItemAt = 0;
// The station answered 401: it runs, but with another --token than the one this page was opened with.
let refused = false;

async function getJSON(path) {
  // A hung station or a silent network never fails a fetch by itself (a TCP timeout takes minutes): give up.
  const response = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(CONTACT_LOST_MS - 500) });
  if (!response.ok) throw Object.assign(new Error(`${path}: HTTP ${response.status}`), { httpStatus: response.status });
  return response.json();
}

// As edge-infer's lines: a score short of 1 is never shown as a flat 1 ("score 1.000" read as certainty).
function scoreText(score) {
  let digits = 3;
  while (score < 1 && Number(score).toFixed(digits) === (1).toFixed(digits) && digits < 6) digits += 1;
  return fmt(score, digits);
}

function fmt(value, digits = 1, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function showStale(delivering) {
  // Without new items the picture and its verdict are the last ones, not the part on the line now.
  $("stream").classList.toggle("stale", !delivering);
  const note = $("stream-note");
  if (!delivering && lastItemAt) {
    note.hidden = false;
    note.textContent = `last picture: no new item since ${clock(lastItemAt)}`;
  } else if (note.textContent.startsWith("last picture")) {
    note.hidden = true;
  }
}

function showNoContact() {
  if (refused || !lastContact || Date.now() - lastContact < CONTACT_LOST_MS) return;
  const state = lastStatus ? lastStatus.source_state : "starting";
  const ended = FINAL.has(state);
  $("source-state").textContent = ended ? `${state} · view closed` : "no contact";
  $("source-state").className = `pill ${ended ? state : "lost"}`;
  $("contact").hidden = false;
  // a run that came to its end is no alarm: the banner is red for a lost source, a stop or no contact only
  $("contact").classList.toggle("ended", state === "finished");
  $("contact").textContent = ended
    ? `The run ended (${state}${lastStatus && lastStatus.error ? `: ${lastStatus.error}` : ""}) and its web view ` +
      "has closed: the figures below are its last."
    : `No contact with the station since ${clock(lastContact)}: the figures below are the last received. ` +
      "Is edge-infer still running?";
  document.body.classList.add("no-contact");
  showStale(false);
}

function showRefused() {
  // A station restarted with another --token answers every request with 401: it runs, so "no contact, is
  // edge-infer still running?" or "view closed" (after the run before it ended) sent the operator the wrong way.
  refused = true;
  $("contact").classList.remove("ended");
  $("source-state").textContent = "token refused";
  $("source-state").className = "pill lost";
  $("contact").hidden = false;
  $("contact").textContent =
    "The station refuses this page's token (HTTP 401): it runs with another --token. Open the page again as " +
    `${location.origin}${location.pathname}?token=SECRET; the figures below are the last received.`;
  document.body.classList.add("no-contact");
  showStale(false);
}

function showStatus(st) {
  if (FINAL.has(st.source_state) && !endRefreshed) {
    // the run ended: the gallery and chart once more, now, before the view closes (it waits for this request;
    // on their own timers they came too late, and the page lacked the run's last defects)
    endRefreshed = true;
    refreshGallery().catch(() => {});
    refreshChart().catch(() => {});
  }
  lastStatus = st;
  lastContact = Date.now();
  refused = false;
  if (st.items !== lastItems) {
    // a page opened during an outage said "no new item since" the moment it was opened, not when the items stopped
    lastItems = st.items;
    lastItemAt = st.last_item_age_s == null ? 0 : lastContact - 1000 * st.last_item_age_s;
  }
  // a run that stopped on an error (a locked or full log, a failed output) says why, never only "finished"
  $("contact").hidden = !st.error;
  $("contact").classList.remove("ended");
  $("contact").textContent = st.error ? `The run stopped on an error: ${st.error}` : "";
  document.body.classList.remove("no-contact");
  showStale(st.source_state === "connected" || st.source_state === "running");
  $("station").textContent = st.station;
  $("station").title = st.station;
  document.title = `${st.station} · defect-edge station`;
  $("source-state").textContent = st.source_state;
  $("source-state").className = `pill ${st.source_state}`;
  $("source").textContent = st.source || "";
  $("items").textContent = st.items;
  $("defective").textContent = st.defective;
  $("errors").textContent = st.errors;
  $("warnings").textContent = st.warnings;
  $("warnings-counter").classList.toggle("warn", st.warnings > 0);
  $("defect-rate").textContent = st.defect_rate === null ? "–" : fmt(100 * st.defect_rate, 1, " %");
  $("fps").textContent = FINAL.has(st.source_state) ? "–" : fmt(st.fps, 1);  // nothing comes in any more
  $("latency").textContent = `${fmt(st.latency_ms_p50, 2)} / ${fmt(st.latency_ms_p99, 2)} ms`;
  $("uptime").textContent = duration(st.uptime_s);
  if (st.model_version) {
    $("model").textContent =
      `${st.model_file.split("/").pop()} · ${st.precision} · version ${st.model_version.slice(0, 24)} · ` +
      `${st.providers.join(", ")} · threshold ${fmt(st.threshold, 3)}`;
  }
  const check = st.station_check || { flagged: 0 };
  $("check").hidden = !check.flagged;
  if (check.flagged) {
    const share = st.items ? (100 * check.flagged) / st.items : 0;
    $("check-text").textContent =
      `${check.flagged === 1 ? "1 item" : `${check.flagged} items`} (${fmt(share, 1)} %) ` +
      `${check.flagged === 1 ? "looks" : "look"} unlike the training images; last: ${check.last}`;
  }
}

// An item is its id and its time: a restarted station (or a new log) numbers its items from 1 again.
function cardKey(it) {
  return `${it.id}:${it.time}:${it.has_image ? 1 : 0}`;
}

function placeholder(text) {
  const box = document.createElement("div");
  box.className = "pending";
  box.textContent = text;
  return box;
}

async function thumbFailed(card, img) {
  // Without a log the web view keeps the pictures of the last 24 defects only: on a fast line the oldest card's
  // picture can be gone before the browser asks for it (404), and that is said instead of a broken image. Any
  // other failure (the network, a station restarting, a log busy) is not for good: the card is drawn again at the
  // next refresh. It had said "picture no longer kept" of pictures the log holds, for as long as the card stayed.
  let status = 0;
  try {
    status = (await fetch(img.src, { cache: "no-store", signal: AbortSignal.timeout(CONTACT_LOST_MS) })).status;
  } catch {}  // no answer: status 0
  if (status === 404) {
    img.replaceWith(placeholder("picture no longer kept"));
    return;
  }
  const box = placeholder("picture not loaded");
  box.title = status ? `HTTP ${status}; tried again at the next refresh` : "no answer; tried again at the next refresh";
  img.replaceWith(box);
  card.dataset.key = "";  // no item has this key: the next refresh makes the card anew
  lastGalleryKey = null;
}

function galleryCard(it) {
  const card = document.createElement("figure");
  card.className = "thumb";
  card.dataset.key = cardKey(it);
  if (it.has_image) {
    const img = document.createElement("img");
    img.decoding = "async";
    img.alt = `defective item ${it.id}`;
    img.onerror = () => thumbFailed(card, img);
    // the time in the address: the browser keeps thumbnails an hour, and a restarted station's item 36 is
    // another part than the one before the restart
    img.src = `thumb/${it.id}.jpg?t=${encodeURIComponent(it.time)}`;
    card.append(img);
  } else {  // the log stores a thumbnail with its next commit: the next refresh draws it
    card.append(placeholder("picture pending"));
  }
  const caption = document.createElement("figcaption");
  const when = new Date(it.time).toLocaleTimeString([], { hour12: false });
  caption.append(when, document.createElement("br"), `score ${scoreText(it.score)}`);
  caption.title = it.source + (it.frame === null ? "" : ` frame ${it.frame}`);
  if (it.warning) {  // e.g. a damaged frame: the verdict is not to be trusted, and the card says so
    card.classList.add("warned");
    const mark = document.createElement("div");
    mark.className = "warning";
    mark.textContent = "warning";
    caption.append(mark);
    caption.title += `\nwarning: ${it.warning}`;
  }
  card.append(caption);
  return card;
}

function showGallery(found) {
  const items = found.items;
  // records the log holds damaged are left out, and said to be: never "no defective part yet" over them
  const damaged = found.damaged || [];
  $("gallery-note").hidden = damaged.length === 0;
  $("gallery-note").textContent = damaged.length
    ? `${damaged.length} damaged record${damaged.length === 1 ? "" : "s"} in the inspection log left out (${damaged[0]})`
    : "";
  $("gallery-empty").hidden = items.length > 0 || damaged.length > 0;
  const key = items.map(cardKey).join(",");
  if (key === lastGalleryKey) return;
  lastGalleryKey = key;
  const gallery = $("gallery");
  // Cards already shown are kept (their thumbnails stay decoded): the browser drawing the station page shares
  // the CPU with the inspection, so each refresh decodes only the thumbnails of new defects. A card listed
  // before its thumbnail was stored is drawn again once the thumbnail exists.
  const shown = new Map([...gallery.children].map((card) => [card.dataset.key, card]));
  gallery.replaceChildren(...items.map((it) => shown.get(cardKey(it)) || galleryCard(it)));
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

let lastRate = null;  // drawn again when the window's width changes (a phone turned)

function showChart(data, hours) {
  const chart = $("chart");
  lastRate = [data, hours];
  // Drawn at its box's own width: drawn 600 wide and stretched, a phone's chart had its labels squeezed to half
  // their width and the last hour's cut at the edge.
  const W = Math.max(200, Math.round(chart.getBoundingClientRect().width) || 600), H = 160, left = 34, bottom = 18, top = 8;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const end = Date.now(), start = end - hours * 3600e3, step = data.bucket_s * 1000;
  const peak = Math.max(0.05, ...data.buckets.map((b) => b.rate || 0));
  const y = (rate) => H - bottom - (rate / peak) * (H - bottom - top);
  const x = (t) => left + ((t - start) / (end - start)) * (W - left - 4);
  const parts = [svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W, y2: H - bottom }),
                 svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom })];
  for (const frac of [0, 0.5, 1]) {
    parts.push(svg("text", { x: 2, y: y(peak * frac) + 4 }, `${Math.round(100 * peak * frac)}%`));
  }
  for (let h = 0; h <= hours; h += 2) {
    const t = start + h * 3600e3;
    const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    const last = h + 2 > hours;  // ends at the right edge, inside the chart
    parts.push(svg("text", { x: last ? W - 2 : x(t), y: H - 4, "text-anchor": last ? "end" : "start" }, label));
  }
  for (const b of data.buckets) {
    const t = Date.parse(b.start);
    if (t + step < start || b.rate === null) continue;
    const x0 = Math.max(left, x(t)), x1 = Math.min(W - 4, x(t + step));
    const bar = svg("rect", { class: "bar", x: x0, y: y(b.rate), width: Math.max(1, x1 - x0 - 1), height: H - bottom - y(b.rate) });
    bar.append(svg("title", {}, `${b.start}: ${b.defective}/${b.items} defective`));
    parts.push(bar);
  }
  chart.replaceChildren(...parts);
}

async function tick(what, fn, everyMs) {
  try {
    await fn();
  } catch (err) {
    console.warn(`station: ${what} update failed:`, err.message);
    if (what === "status" && err.httpStatus === 401) showRefused();
    else if (what === "status") {
      refused = false;
      showNoContact();
    }
  }
  setTimeout(() => tick(what, fn, everyMs), everyMs);
}

function startStream() {
  const img = $("stream");
  img.addEventListener("load", () => { $("stream-note").hidden = true; });
  img.addEventListener("error", () => {
    $("stream-note").hidden = false;
    $("stream-note").textContent = "stream interrupted; retrying…";
    setTimeout(() => { img.src = `stream.mjpg?t=${Date.now()}`; }, 2000);
  });
  img.src = "stream.mjpg";
}

startStream();
tick("status", async () => showStatus(await getJSON("api/status")), 1000);
setInterval(showNoContact, 1000);  // judged by the time since the last answer, whether or not a request failed
async function refreshGallery() {
  try {
    showGallery(await getJSON("api/defects?limit=20"));
  } catch (err) {
    // the station answered with an error: say so, not "no defective part yet" (no answer at all, as once the view
    // has closed after the run, is the contact banner's to tell; the gallery shown stays the last one read)
    if (!err.httpStatus || err.httpStatus === 401) throw err;  // a refused token: the banner says so
    $("gallery-empty").hidden = true;
    $("gallery-note").hidden = false;
    $("gallery-note").textContent = `the last defects could not be read (${err.message}); see the station's log`;
    lastGalleryKey = null;
    throw err;
  }
}

async function refreshChart() {
  showChart(await getJSON("api/rate?hours=8"), 8);
}

tick("gallery", refreshGallery, 5000);
tick("chart", refreshChart, 10000);
window.addEventListener("resize", () => lastRate && showChart(...lastRate));
