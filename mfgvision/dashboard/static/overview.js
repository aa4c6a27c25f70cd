// Overview page: polls the JSON API, updates the camera cards in place and redraws the charts.
(() => {
  "use strict";

  const mfg = window.mfg;
  const root = document.getElementById("overview");
  const grid = document.getElementById("cameras");
  const empty = document.getElementById("empty");
  const cardTemplate = document.getElementById("camera-card");
  const kpis = document.getElementById("kpis");
  const liveBase = root.dataset.live;
  const pollMs = Number(root.dataset.pollMs) || 2000;
  const statsMs = Number(root.dataset.statsMs) || 15000;
  const staleAfterS = 300;
  const maxDetectionsShown = 6;
  const cards = new Map();
  let statsTimer = null;

  const kpi = {};
  for (const el of kpis.querySelectorAll("[data-ref]")) kpi[el.dataset.ref] = el;

  function formatCounts(counts) {
    return `${mfg.fmtInt(counts.ok)} OK · ${mfg.fmtInt(counts.ng)} NG · ${mfg.fmtPct(counts.yield_pct)}`;
  }

  function createCard() {
    const node = cardTemplate.content.firstElementChild.cloneNode(true);
    const refs = {};
    for (const el of node.querySelectorAll("[data-ref]")) refs[el.dataset.ref] = el;
    const card = { node, refs, imageUrl: undefined, live: false, still: null };
    refs.live.hidden = !liveBase;
    refs.live.addEventListener("click", () => setLive(card, !card.live));
    return card;
  }

  // The Live toggle streams the camera's annotated frames into the card instead of the still.
  function setLive(card, on) {
    const { live, image, noImage, imageKind } = card.refs;
    card.live = on;
    live.setAttribute("aria-pressed", String(on));
    card.node.classList.toggle("live", on);
    image.onerror = null;
    live.title = on ? "Stop the live view" : "Stream this camera's annotated frames";
    if (on) {
      imageKind.hidden = true;
      image.onerror = () => {
        if (!card.live) return;
        setLive(card, false);
        live.title = "Live view unavailable (too many viewers, or the camera is gone); try again later";
      };
      image.src = `${liveBase}/${encodeURIComponent(card.node.dataset.camera)}/live.mjpeg`;
      image.alt = `${card.refs.name.textContent}: live`;
      image.hidden = false;
      noImage.hidden = true;
      return;
    }
    image.removeAttribute("src");
    card.imageUrl = undefined;
    if (card.still) showImage(card, ...card.still);
  }

  function showImage(card, url, kind, alt) {
    const { image, noImage, imageKind } = card.refs;
    card.still = [url, kind, alt];
    if (card.live) return;
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

  function renderDetections(list, latest) {
    const items = [];
    if (!latest) {
      const idle = document.createElement("li");
      idle.className = "idle";
      idle.textContent = "Waiting for the first inference";
      list.replaceChildren(idle);
      return;
    }
    const detections = latest.detections;
    const shown = cards.size >= 3 ? 3 : maxDetectionsShown;
    for (const d of detections.slice(0, shown)) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = d.label;
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${d.probability_pct.toFixed(1)} %`;
      li.style.setProperty("--c", mfg.classColour(d.label_id));
      li.append(label, pct);
      items.push(li);
    }
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

  // The link to the camera's health page, saying when it drifts or has no reference frame.
  function renderHealth(link, cam) {
    const drift = cam.drift;
    link.hidden = !cam.health_url;
    if (!cam.health_url) return;
    link.href = cam.health_url;
    let text = "Health";
    let level = "";
    if (drift && drift.alerts.length) {
      text = `Drift: ${drift.alerts.map(mfg.driftAlert).join(", ")}`;
      level = "error";
    } else if (drift && !drift.reference) {
      text = "Health · no reference";
      level = "warn";
    }
    link.textContent = text;
    link.dataset.level = level;
  }

  function updateCard(card, cam, generatedAt, windowLabel) {
    const { refs } = card;
    const latest = cam.latest;
    const status = cam.status;
    card.node.dataset.camera = cam.camera_id;
    card.node.dataset.verdict = latest ? latest.verdict : "";
    refs.name.textContent = cam.camera_name && cam.camera_name !== cam.camera_id
      ? `${cam.camera_name} · ${cam.camera_id}` : cam.camera_id;
    refs.name.title = refs.name.textContent;
    refs.verdict.textContent = latest ? latest.verdict : "–";
    refs.status.dataset.level = status ? status.level : "";
    refs.statusText.textContent = status ? status.label : "No status";
    refs.status.title = status && status.updated ? `Reported ${mfg.localTime(status.updated)}` : "The module has not written a status file";
    const fault = Boolean(status && status.level !== "ok" && (status.error || status.level === "error"));
    refs.error.hidden = !fault;
    refs.error.dataset.level = fault ? status.level : "";
    refs.error.textContent = fault ? (status.error ? `${status.label}: ${status.error}` : status.label) : "";
    const fps = status && status.state !== "offline" ? status.fps : null;
    refs.fps.textContent = fps === null || fps === undefined ? "–" : `${fps.toFixed(fps < 10 ? 2 : 1)} fps`;
    refs.yield.textContent = mfg.fmtPct(cam.counts.yield_pct);
    refs.yield.title = `${windowLabel}`;
    refs.counts.textContent = `${mfg.fmtInt(cam.counts.ok)} / ${mfg.fmtInt(cam.counts.ng)}`;
    refs.counts.title = `${windowLabel}: ${formatCounts(cam.counts)}`;
    if (latest) {
      const created = new Date(latest.created);
      const ageS = (generatedAt - created) / 1000;
      // A verdict is live only while its module inspects: recent, and the module not in a fault.
      const live = ageS <= staleAfterS && !(status && status.level === "error");
      card.node.classList.toggle("stale", !live);
      refs.verdict.title = live ? "Latest verdict" : "Not live: the last verdict before the module stopped inspecting";
      refs.time.dateTime = latest.created;
      refs.time.textContent = created.toLocaleString();
      refs.age.textContent = live ? mfg.fmtAge(ageS) : `${mfg.fmtAge(ageS)} · not live`;
      refs.inference.textContent = `${latest.inferencing_time_ms.toFixed(1)} ms`;
      refs.model.textContent = `${latest.model_name} v${latest.model_version}`;
      refs.frame.href = latest.detail_url || `/inferences/${encodeURIComponent(latest.unique_id)}`;
      refs.frame.title = "Open this inspection";
    } else {
      card.node.classList.remove("stale");
      refs.verdict.title = "";
      refs.time.textContent = "No inference yet";
      refs.age.textContent = "";
      refs.inference.textContent = "–";
      refs.model.textContent = status && status.model ? status.model : "";
      refs.frame.removeAttribute("href");
    }
    renderDetections(refs.detections, latest);
    renderHealth(refs.health, cam);
    showImage(card, latest ? latest.image_url : null, latest ? latest.image_kind : null,
      `${refs.name.textContent}: latest frame`);
    // The camera's zones over its frame (the latest's or the live one), the fired ones highlighted.
    const drawn = latest ? mfg.drawZones(refs.zones, cam.zones.items, latest.frame, latest.rules) : 0;
    refs.zones.classList.toggle("off", drawn === 0 || !(card.live || latest.image_url));
  }

  function renderCameras(data) {
    const generatedAt = new Date(data.generated_at);
    const seen = new Set();
    data.cameras.forEach((cam, index) => {
      seen.add(cam.camera_id);
      let card = cards.get(cam.camera_id);
      if (!card) {
        card = createCard();
        cards.set(cam.camera_id, card);
      }
      updateCard(card, cam, generatedAt, data.window.label);
      if (grid.children[index] !== card.node) grid.insertBefore(card.node, grid.children[index] || null);
    });
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.live = false;
        card.refs.image.removeAttribute("src");
        card.node.remove();
        cards.delete(id);
      }
    }
    grid.dataset.count = String(data.cameras.length);
    empty.hidden = data.cameras.length > 0;
  }

  function renderTotals(data) {
    const t = data.totals;
    kpi.ok.textContent = mfg.fmtInt(t.ok);
    kpi.ng.textContent = mfg.fmtInt(t.ng);
    kpi.yield.textContent = mfg.fmtPct(t.yield_pct);
    kpi.windowLabel.textContent = data.window.label;
    const from = new Date(data.window.from);
    const to = new Date(data.window.to);
    const sameDay = from.toDateString() === to.toDateString();
    const fmt = (d) => d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    kpi.range.textContent = sameDay
      ? `${fmt(from)} – ${fmt(to)}`
      : `${from.toLocaleDateString()} ${fmt(from)} – ${to.toLocaleDateString()} ${fmt(to)}`;
  }

  // Charts ------------------------------------------------------------------------------------
  const chartFont = { family: getComputedStyle(document.body).fontFamily, color: "#c9d4e3", size: 13 };
  const axis = { gridcolor: "#243041", zerolinecolor: "#2a3647", linecolor: "#2a3647", tickfont: { size: 12 } };

  function baseLayout(extra) {
    return {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: chartFont,
      margin: { l: 46, r: 10, t: 8, b: 36 },
      showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 12 } },
      xaxis: { ...axis, type: "date" },
      yaxis: { ...axis, rangemode: "tozero" },
      hoverlabel: { bgcolor: "#1c2430", bordercolor: "#38bdf8", font: { color: "#e9eef5" } },
      ...extra,
    };
  }

  function emptyNote(text) {
    return [{ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { size: 15, color: "#9aa8ba" } }];
  }

  const plotConfig = { displayModeBar: false, responsive: true };

  function drawDefects(stats) {
    const el = document.getElementById("chart-defects");
    const d = stats.defects;
    document.getElementById("defects-bucket").textContent = d.bucket_s >= 3600 ? "detections per hour" : "detections per 5 min";
    const x0 = mfg.plotlyTime(stats.window.from);
    const x1 = mfg.plotlyTime(stats.window.to);
    const traces = d.labels.map((label) => ({
      type: "bar",
      name: `${label} (${mfg.fmtInt(d.totals[label])})`,
      x: d.buckets.map((b) => mfg.plotlyTime(new Date(new Date(b.start).getTime() + d.bucket_s * 500).toISOString())),
      y: d.buckets.map((b) => b.counts[label] || 0),
      width: d.bucket_s * 1000 * 0.85,
      marker: { color: mfg.labelColour(label) },
      hovertemplate: `${label}: %{y}<extra></extra>`,
    }));
    const layout = baseLayout({
      barmode: "stack",
      xaxis: { ...axis, type: "date", range: [x0, x1] },
      annotations: traces.length ? [] : emptyNote("No defects in this window"),
      showlegend: traces.length > 0,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 12 }, traceorder: "normal" },
    });
    Plotly.react(el, traces, layout, plotConfig);
  }

  function drawLatency(stats) {
    const el = document.getElementById("chart-latency");
    const series = stats.latency.series;
    const traces = Object.entries(series).map(([camera, points], index) => ({
      type: "scatter",
      mode: points.length > 40 ? "lines" : "lines+markers",
      name: camera,
      x: points.map((p) => mfg.plotlyTime(new Date(new Date(p.start).getTime() + stats.latency.bucket_s * 500).toISOString())),
      y: points.map((p) => p.mean_ms),
      customdata: points.map((p) => [p.max_ms, p.count]),
      line: { color: mfg.cameraColour(index), width: 2 },
      marker: { size: 5 },
      hovertemplate: `${camera}<br>mean %{y:.1f} ms · max %{customdata[0]:.1f} ms<br>%{customdata[1]} inferences<extra></extra>`,
    }));
    const layout = baseLayout({
      xaxis: { ...axis, type: "date", range: [mfg.plotlyTime(stats.window.from), mfg.plotlyTime(stats.window.to)] },
      yaxis: { ...axis, rangemode: "tozero", ticksuffix: " ms" },
      annotations: traces.length ? [] : emptyNote("No inferences in this window"),
      showlegend: traces.length > 0,
    });
    Plotly.react(el, traces, layout, plotConfig);
  }

  async function refreshStats() {
    if (statsTimer !== null) clearTimeout(statsTimer);
    statsTimer = null;
    try {
      if (typeof Plotly === "undefined") throw new Error("charting library not loaded");
      const stats = await mfg.getJSON(`${root.dataset.stats}?${mfg.windowQuery(getWindow())}`, 15000);
      await mfg.loadLabelColours(stats.defects.labels);
      drawDefects(stats);
      drawLatency(stats);
      root.dataset.chartsReady = "true";
    } catch (error) {
      console.warn("statistics not updated:", error.message);
    } finally {
      statsTimer = setTimeout(refreshStats, statsMs);
    }
  }

  // Polling -----------------------------------------------------------------------------------
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refreshStats();
  });

  const getWindow = mfg.bindWindowPicker(() => {
    poller.now();
    refreshStats();
  });
  mfg.writeWindow(getWindow());
  const poller = mfg.poll({
    url: () => `${root.dataset.api}?${mfg.windowQuery(getWindow())}`,
    everyMs: pollMs,
    timeoutMs: Math.max(pollMs * 2, 5000),
    render(data) {
      renderTotals(data);
      renderCameras(data);
    },
  });
  refreshStats();
})();
