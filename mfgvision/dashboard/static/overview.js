// Overview page: polls the JSON API and updates the camera cards in place.
(() => {
  "use strict";

  const root = document.getElementById("overview");
  const grid = document.getElementById("cameras");
  const empty = document.getElementById("empty");
  const connection = document.getElementById("connection");
  const cardTemplate = document.getElementById("camera-card");
  const apiUrl = root.dataset.api;
  const pollMs = Number(root.dataset.pollMs) || 2000;
  const requestTimeoutMs = Math.max(pollMs * 2, 4000);
  const staleAfterS = 300;
  const maxDetectionsShown = 6;
  const cards = new Map();
  let timer = null;
  let inFlight = false;

  function formatPct(value) {
    return value === null || value === undefined ? "–" : `${value.toFixed(1)} %`;
  }

  function formatAge(seconds) {
    if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function formatCounts(counts) {
    return `${counts.ok} OK · ${counts.ng} NG · ${formatPct(counts.yield_pct)}`;
  }

  function setConnection(state, text) {
    connection.dataset.state = state;
    document.body.classList.toggle("offline", state === "lost");
    connection.querySelector(".connection-text").textContent = text;
  }

  function renderTotals(totals) {
    for (const [period, counts] of Object.entries(totals)) {
      const group = document.querySelector(`.total-group[data-period="${period}"]`);
      if (!group) continue;
      group.querySelector('[data-field="ok"]').textContent = counts.ok.toLocaleString();
      group.querySelector('[data-field="ng"]').textContent = counts.ng.toLocaleString();
      group.querySelector('[data-field="yield"]').textContent = formatPct(counts.yield_pct);
    }
  }

  function createCard() {
    const node = cardTemplate.content.firstElementChild.cloneNode(true);
    const refs = {};
    for (const el of node.querySelectorAll("[data-ref]")) refs[el.dataset.ref] = el;
    return { node, refs, imageUrl: null };
  }

  function showImage(card, url, kind, alt) {
    const { image, noImage, imageKind } = card.refs;
    imageKind.hidden = kind !== "raw";
    if (url === card.imageUrl) return;
    card.imageUrl = url;
    if (!url) {
      image.hidden = true;
      noImage.hidden = false;
      noImage.textContent = "No image stored";
      return;
    }
    if (image.hidden) noImage.textContent = "Loading image…";
    // Load off-screen first so the card never flashes an empty frame.
    const next = new Image();
    next.onload = () => {
      if (card.imageUrl !== url) return;
      image.src = url;
      image.alt = alt;
      image.hidden = false;
      noImage.hidden = true;
    };
    next.onerror = () => {
      if (card.imageUrl !== url || !image.hidden) return;
      noImage.textContent = "Image unavailable";
    };
    next.src = url;
  }

  function renderDetections(list, detections) {
    const items = detections.slice(0, maxDetectionsShown).map((d) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = d.label;
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${d.probability_pct.toFixed(1)} %`;
      li.append(label, pct);
      return li;
    });
    const hidden = detections.length - items.length;
    if (hidden > 0) {
      const more = document.createElement("li");
      more.className = "more";
      more.textContent = `+${hidden} more`;
      items.push(more);
    }
    if (detections.length === 0) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = "No defects detected";
      items.push(none);
    }
    list.replaceChildren(...items);
  }

  function updateCard(card, cam, generatedAt) {
    const { refs } = card;
    const created = new Date(cam.created);
    const ageS = (generatedAt - created) / 1000;
    card.node.dataset.verdict = cam.verdict;
    card.node.classList.toggle("stale", ageS > staleAfterS);
    refs.name.textContent = cam.camera_name || cam.camera_id;
    refs.id.textContent = cam.camera_name && cam.camera_name !== cam.camera_id ? cam.camera_id : "";
    refs.verdict.textContent = cam.verdict;
    refs.time.dateTime = cam.created;
    refs.time.textContent = created.toLocaleString();
    refs.age.textContent = formatAge(ageS);
    refs.inference.textContent = `${cam.inferencing_time_ms.toFixed(1)} ms`;
    refs.model.textContent = `${cam.model_name} v${cam.model_version}`;
    refs.hour.textContent = formatCounts(cam.counts.last_hour);
    refs.all.textContent = formatCounts(cam.counts.all);
    renderDetections(refs.detections, cam.detections);
    showImage(card, cam.image_url, cam.image_kind, `${refs.name.textContent}: latest frame`);
  }

  function renderCameras(cameras, generatedAt) {
    const seen = new Set();
    cameras.forEach((cam, index) => {
      seen.add(cam.camera_id);
      let card = cards.get(cam.camera_id);
      if (!card) {
        card = createCard();
        cards.set(cam.camera_id, card);
      }
      updateCard(card, cam, generatedAt);
      if (grid.children[index] !== card.node) grid.insertBefore(card.node, grid.children[index] || null);
    });
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.node.remove();
        cards.delete(id);
      }
    }
    grid.dataset.count = String(cameras.length);
    empty.hidden = cameras.length > 0;
  }

  function render(data) {
    renderTotals(data.totals);
    renderCameras(data.cameras, new Date(data.generated_at));
  }

  async function poll() {
    timer = null;
    if (inFlight) return;
    inFlight = true;
    const controller = new AbortController();
    const abort = setTimeout(() => controller.abort(), requestTimeoutMs);
    try {
      const response = await fetch(apiUrl, { cache: "no-store", signal: controller.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      setConnection("live", `Live · ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      const reason = error.name === "AbortError" ? "timed out" : error.message;
      setConnection("lost", `Connection lost (${reason}) · retrying`);
    } finally {
      clearTimeout(abort);
      inFlight = false;
      schedule(pollMs);
    }
  }

  function schedule(delay) {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") schedule(0);
  });

  poll();
})();
