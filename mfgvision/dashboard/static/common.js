// Helpers shared by the dashboard pages: formatting, fetching and polling, the time-window picker.
(() => {
  "use strict";

  // One colour per class on every page: the server's palette, keyed by the class's index in the
  // model's labels; class names map to their index through /api/label-colours.
  const coloursMeta = document.querySelector('meta[name="class-colours"]');
  const PALETTE = coloursMeta ? JSON.parse(coloursMeta.content) : ["#BBBBBB"];
  const labelColours = new Map();
  const CAMERA_PALETTE = ["#38bdf8", "#a3e635", "#f472b6", "#fbbf24", "#c084fc", "#2dd4bf"];

  const pad = (n) => String(n).padStart(2, "0");
  const DRIFT_ALERTS = {
    camera_moved: "Camera moved",
    blur: "Blur",
    brightness: "Brightness",
    contrast: "Contrast",
    saturation: "Saturation",
    confidence: "Confidence",
    class_rate: "Class mix",
    ng_rate: "NG rate",
  };

  const mfg = {
    fmtInt(n) {
      return n === null || n === undefined ? "–" : Number(n).toLocaleString();
    },
    fmtPct(value) {
      return value === null || value === undefined ? "–" : `${value.toFixed(1)} %`;
    },
    fmtAge(seconds) {
      if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
      if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
      if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
      return `${Math.round(seconds / 86400)} d ago`;
    },
    localTime(iso) {
      return new Date(iso).toLocaleString();
    },
    // "YYYY-MM-DD HH:MM:SS" in local time: plotly shows date strings as given.
    plotlyTime(iso) {
      const d = new Date(iso);
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    },
    toLocalInput(date, seconds) {
      const base = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
      return seconds ? `${base}:${pad(date.getSeconds())}` : base;
    },
    fromLocalInput(value) {
      if (!value) return null;
      const d = new Date(value);
      return Number.isNaN(d.getTime()) ? null : d.toISOString();
    },
    classColour(labelId) {
      return PALETTE[labelId % PALETTE.length];
    },
    labelColour(label) {
      return labelColours.get(label) || PALETTE[PALETTE.length - 1];
    },
    // Load the colours of stored class names again when ``labels`` holds one not known yet.
    async loadLabelColours(labels = []) {
      if (!coloursMeta || (labelColours.size && labels.every((l) => labelColours.has(l)))) return;
      const colours = await mfg.getJSON(coloursMeta.dataset.url);
      for (const [label, colour] of Object.entries(colours)) labelColours.set(label, colour);
    },
    // A drift alert's name as the pages show it (docs/drift.md, "What is checked").
    driftAlert(alert) {
      return DRIFT_ALERTS[alert] || alert;
    },
    cameraColour(index) {
      return CAMERA_PALETTE[index % CAMERA_PALETTE.length];
    },
    async getJSON(url, timeoutMs = 8000) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      try {
        const response = await fetch(url, { cache: "no-store", signal: controller.signal, credentials: "same-origin" });
        if (response.status === 401) {
          window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
          throw new Error("signed out");
        }
        let body = null;
        try { body = await response.json(); } catch (_) { body = null; }
        if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
        return body;
      } catch (error) {
        if (error.name === "AbortError") throw new Error("timed out");
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
    setConnection(state, text) {
      const el = document.getElementById("connection");
      if (!el) return;
      el.dataset.state = state;
      document.body.classList.toggle("offline", state === "lost");
      el.querySelector(".connection-text").textContent = text;
    },
    // Poll a page's JSON API: fetch ``url()``, hand the answer to ``render``, show the connection
    // state and poll again ``everyMs`` later; poll at once when the page is shown again. Starts at
    // once; ``now()`` on what it returns polls at once (e.g. when the time window changes).
    poll({ url, everyMs, timeoutMs, render }) {
      let timer = null;
      let inFlight = false;
      const schedule = (delay) => {
        if (timer !== null) clearTimeout(timer);
        timer = setTimeout(tick, delay);
      };
      async function tick() {
        timer = null;
        if (inFlight) return;
        inFlight = true;
        try {
          render(await mfg.getJSON(url(), timeoutMs));
          mfg.setConnection("live", `Live · ${new Date().toLocaleTimeString()}`);
        } catch (error) {
          mfg.setConnection("lost", `Connection lost (${error.message}) · retrying`);
        } finally {
          inFlight = false;
          schedule(everyMs);
        }
      }
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") schedule(0);
      });
      tick();
      return { now: () => schedule(0) };
    },
    // The time window: ?window=hour|shift|day|custom&from=&to= in the URL, remembered per browser.
    readWindow() {
      const params = new URLSearchParams(window.location.search);
      let state = { window: params.get("window"), from: params.get("from"), to: params.get("to") };
      if (!state.window) {
        try { state = JSON.parse(localStorage.getItem("mfgvision.window")) || {}; } catch (_) { state = {}; }
      }
      if (!["hour", "shift", "day", "custom"].includes(state.window)) state = { window: "hour" };
      if (state.window === "custom" && !state.from) state = { window: "hour" };
      return state;
    },
    writeWindow(state) {
      try { localStorage.setItem("mfgvision.window", JSON.stringify(state)); } catch (_) { /* private mode */ }
      const params = new URLSearchParams();
      params.set("window", state.window);
      if (state.window === "custom") {
        params.set("from", state.from);
        if (state.to) params.set("to", state.to);
      }
      history.replaceState(null, "", `${window.location.pathname}?${params}`);
    },
    windowQuery(state) {
      const params = new URLSearchParams({ window: state.window });
      if (state.window === "custom") {
        params.set("from", state.from);
        if (state.to) params.set("to", state.to);
      }
      return params.toString();
    },
    bindWindowPicker(onChange) {
      let state = mfg.readWindow();
      const buttons = document.querySelectorAll(".window-picker .seg");
      const dialog = document.getElementById("range-dialog");
      const form = document.getElementById("range-form");
      const error = form.querySelector('[data-ref="error"]');
      const mark = () => buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.window === state.window)));
      const apply = (next) => {
        state = next;
        mfg.writeWindow(state);
        mark();
        onChange(state);
      };
      buttons.forEach((button) => button.addEventListener("click", () => {
        if (button.dataset.window !== "custom") {
          apply({ window: button.dataset.window });
          return;
        }
        const now = new Date();
        form.elements.from.value = mfg.toLocalInput(state.from ? new Date(state.from) : new Date(now - 8 * 3600e3));
        form.elements.to.value = state.to ? mfg.toLocalInput(new Date(state.to)) : "";
        error.hidden = true;
        dialog.showModal();
      }));
      form.querySelector('[data-action="cancel"]').addEventListener("click", () => dialog.close());
      form.addEventListener("submit", (event) => {
        const from = mfg.fromLocalInput(form.elements.from.value);
        const to = mfg.fromLocalInput(form.elements.to.value);
        let problem = null;
        if (!from) problem = "Choose a start time.";
        else if (to && new Date(to) <= new Date(from)) problem = "The end must be after the start.";
        else if (new Date(to || Date.now()) - new Date(from) > 31 * 86400e3) problem = "A range spans at most 31 days.";
        if (problem) {
          event.preventDefault();
          error.textContent = problem;
          error.hidden = false;
          return;
        }
        apply({ window: "custom", from, to: to || null });
      });
      mark();
      return () => state;
    },
  };
  window.mfg = mfg;
})();
