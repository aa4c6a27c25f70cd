// History page: filters in the URL, keyset pages from /api/inferences, the first page stays live.
(() => {
  "use strict";

  const mfg = window.mfg;
  const root = document.getElementById("history");
  const form = document.getElementById("filters");
  const rowsEl = document.getElementById("rows");
  const summary = document.getElementById("summary");
  const errorEl = document.getElementById("history-error");
  const tableEmpty = document.getElementById("table-empty");
  const pageLabel = document.getElementById("page-label");
  const newerBtn = root.querySelector('[data-action="newer"]');
  const olderBtn = root.querySelector('[data-action="older"]');
  const pollMs = Number(root.dataset.pollMs) || 5000;
  const FILTERS = ["camera", "label", "verdict", "rule", "from", "to"];
  const CHOICES = ["camera", "label", "verdict", "rule"];
  let cursors = [null];  // cursor of each page visited; the last one is shown
  let nextCursor = null;
  let timer = null;
  let shownIds = new Set();
  let loading = false;

  function readFilters() {
    const params = new URLSearchParams(window.location.search);
    const out = {};
    for (const key of FILTERS) {
      const value = params.get(key);
      if (value) out[key] = value;
    }
    return out;
  }

  function fillForm(filters) {
    form.elements.camera.value = filters.camera || "";
    form.elements.label.value = filters.label || "";
    form.elements.verdict.value = filters.verdict || "";
    form.elements.rule.value = filters.rule || "";
    form.elements.from.value = filters.from ? mfg.toLocalInput(new Date(filters.from), true) : "";
    form.elements.to.value = filters.to ? mfg.toLocalInput(new Date(filters.to), true) : "";
  }

  function formFilters() {
    const out = {};
    for (const key of CHOICES) {
      if (form.elements[key].value) out[key] = form.elements[key].value;
    }
    const from = mfg.fromLocalInput(form.elements.from.value);
    const to = mfg.fromLocalInput(form.elements.to.value);
    if (from) out.from = from;
    if (to) out.to = to;
    return out;
  }

  function ensureOption(select, value) {
    if (!value || [...select.options].some((o) => o.value === value)) return;
    select.add(new Option(value, value));
  }

  async function loadChoices(filters) {
    try {
      const [cameras, labels, rules] = await Promise.all([
        mfg.getJSON(root.dataset.cameras), mfg.getJSON(root.dataset.labels), mfg.getJSON(root.dataset.rules),
      ]);
      for (const cam of cameras) ensureOption(form.elements.camera, cam.camera_id);
      for (const label of labels) ensureOption(form.elements.label, label);
      for (const rule of rules) ensureOption(form.elements.rule, rule);
    } catch (error) {
      console.warn("filter choices not loaded:", error.message);
    }
    ensureOption(form.elements.camera, filters.camera);
    ensureOption(form.elements.label, filters.label);
    ensureOption(form.elements.rule, filters.rule);
    fillForm(filters);
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.append(content); else td.textContent = content;
    return td;
  }

  // One chip per rule that fired (NG or alarm), its firings' details in the tooltip.
  function ruleChips(rules) {
    const chips = document.createElement("div");
    chips.className = "chips";
    const byRule = new Map();
    for (const fired of rules || []) {
      const seen = byRule.get(fired.rule) || { yields: "alarm", details: [] };
      if (fired.yields === "NG") seen.yields = "NG";
      seen.details.push(fired.detail);
      byRule.set(fired.rule, seen);
    }
    for (const [rule, seen] of byRule) {
      const chip = document.createElement("span");
      chip.className = "chip rule";
      chip.dataset.rule = rule;
      chip.dataset.yields = seen.yields;
      chip.title = seen.details.join("; ");
      chip.textContent = rule;
      chips.append(chip);
    }
    if (!byRule.size) chips.textContent = "–";
    return chips;
  }

  function row(item, fresh) {
    const tr = document.createElement("tr");
    tr.dataset.id = item.unique_id;
    if (fresh) tr.classList.add("fresh");
    let thumb;
    if (item.images.thumbnail) {
      thumb = document.createElement("img");
      thumb.className = "thumb";
      thumb.loading = "lazy";
      thumb.src = item.images.thumbnail;
      thumb.alt = "";
    } else {
      thumb = document.createElement("span");
      thumb.className = "thumb none";
      thumb.textContent = "no image";
    }
    const link = document.createElement("a");
    link.href = item.detail_url;
    link.textContent = new Date(item.created).toLocaleString();
    const camera = document.createElement("div");
    camera.textContent = item.camera_name;
    if (item.camera_name !== item.camera_id) {
      const id = document.createElement("div");
      id.className = "cam-id";
      id.textContent = item.camera_id;
      camera.append(id);
    }
    const pill = document.createElement("span");
    pill.className = `pill ${item.verdict}`;
    pill.textContent = item.verdict;
    const chips = document.createElement("div");
    chips.className = "chips";
    const counts = new Map();
    for (const d of item.detections) {
      const c = counts.get(d.label) || { n: 0, best: 0, labelId: d.label_id };
      c.n += 1;
      c.best = Math.max(c.best, d.probability_pct);
      counts.set(d.label, c);
    }
    for (const [label, c] of counts) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.setProperty("--c", mfg.classColour(c.labelId));
      const b = document.createElement("b");
      b.textContent = c.n > 1 ? `${c.n}× ${label}` : label;
      chip.append(b, ` ${c.best.toFixed(0)} %`);
      chips.append(chip);
    }
    if (!counts.size) chips.textContent = "–";
    tr.append(cell(thumb, "col-thumb"), cell(link), cell(camera), cell(pill), cell(chips),
      cell(ruleChips(item.rules)), cell(`${item.inferencing_time_ms.toFixed(1)} ms`, "num"));
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      window.location.assign(item.detail_url);
    });
    return tr;
  }

  function query(filters, cursor) {
    const params = new URLSearchParams(filters);
    params.set("limit", "50");
    if (cursor) params.set("cursor", cursor);
    return `${root.dataset.api}?${params}`;
  }

  async function load(quiet) {
    if (loading) return;
    loading = true;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const filters = readFilters();
    const cursor = cursors[cursors.length - 1];
    try {
      const page = await mfg.getJSON(query(filters, cursor));
      errorEl.hidden = true;
      const firstLoad = !quiet;
      const nodes = page.items.map((item) => row(item, !firstLoad && !shownIds.has(item.unique_id)));
      // Rules seen firing are choices too, also those no camera's settings name any more.
      for (const item of page.items) {
        for (const fired of item.rules || []) ensureOption(form.elements.rule, fired.rule);
      }
      rowsEl.replaceChildren(...nodes);
      shownIds = new Set(page.items.map((item) => item.unique_id));
      nextCursor = page.next_cursor;
      const total = `${mfg.fmtInt(page.total)}${page.total_capped ? "+" : ""}`;
      const first = (cursors.length - 1) * 50 + (page.items.length ? 1 : 0);
      const last = (cursors.length - 1) * 50 + page.items.length;
      summary.replaceChildren();
      const b = document.createElement("b");
      b.textContent = total;
      summary.append(b, ` inspection${page.total === 1 ? "" : "s"} match · showing ${first}–${last}`);
      tableEmpty.hidden = page.items.length > 0;
      pageLabel.textContent = `Page ${cursors.length}`;
      newerBtn.disabled = cursors.length <= 1;
      olderBtn.disabled = !nextCursor;
      root.dataset.loaded = "true";
      mfg.setConnection("live", cursors.length === 1 && !filters.to
        ? `Live · ${new Date().toLocaleTimeString()}` : "Paused on an older page");
    } catch (error) {
      errorEl.textContent = error.message;
      errorEl.hidden = false;
      mfg.setConnection("lost", `Connection lost (${error.message}) · retrying`);
    } finally {
      loading = false;
      const live = cursors.length === 1 && !filters.to;
      if (live) timer = setTimeout(() => load(true), pollMs);
    }
  }

  function applyFilters(filters) {
    const params = new URLSearchParams(filters);
    const search = params.toString();
    history.pushState(null, "", search ? `?${search}` : window.location.pathname);
    cursors = [null];
    load(false);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters(formFilters());
  });
  form.querySelector('[data-action="reset"]').addEventListener("click", () => {
    fillForm({});
    applyFilters({});
  });
  for (const name of CHOICES) {
    form.elements[name].addEventListener("change", () => applyFilters(formFilters()));
  }
  olderBtn.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    load(false);
  });
  newerBtn.addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    load(false);
  });
  window.addEventListener("popstate", () => {
    fillForm(readFilters());
    cursors = [null];
    load(false);
  });

  const initial = readFilters();
  fillForm(initial);
  loadChoices(initial);
  load(false);
})();
