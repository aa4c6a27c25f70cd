// Camera health page: the camera's drift figures over the window, its reference frame beside the
// latest checked frame, and its drift alerts; polls the JSON API and updates in place.
(() => {
  "use strict";

  const mfg = window.mfg;
  const root = document.getElementById("camera");
  const refs = {};
  for (const el of root.querySelectorAll("[data-ref]")) refs[el.dataset.ref] = el;
  const pollMs = Number(root.dataset.pollMs) || 10000;

  const signed = (text, v) => (v > 0 ? `+${text}` : text);
  const pct = (v) => signed(`${(v * 100).toFixed(1)} %`, v);
  const points = (v) => signed(`${(v * 100).toFixed(1)} pts`, v);
  const FIGURES = {
    shift_px: { label: "Shift", fmt: (v) => `${v.toFixed(1)} px` },
    rotation_deg: { label: "Rotation", fmt: (v) => signed(`${v.toFixed(2)}°`, v) },
    scale_change: { label: "Scale", fmt: pct },
    sharpness_change: { label: "Sharpness", fmt: pct },
    brightness_change: { label: "Brightness", fmt: pct },
    contrast_change: { label: "Contrast", fmt: pct },
    saturation_change: { label: "Saturation", fmt: pct },
    confidence_psi: { label: "Confidence PSI", fmt: (v) => v.toFixed(3) },
    class_rate_change: { label: "Class rate", fmt: points },
    ng_rate_change: { label: "NG rate", fmt: points },
  };
  const COLOURS = ["#38bdf8", "#a3e635", "#f472b6", "#fbbf24", "#c084fc", "#2dd4bf", "#fb923c", "#f87171", "#94a3b8", "#e879f9"];

  const alertName = mfg.driftAlert;
  const figureName = (figure) => (FIGURES[figure] ? FIGURES[figure].label : figure);
  function figureText(figure, value) {
    if (value === null || value === undefined) return "no match with the reference";
    return FIGURES[figure] ? FIGURES[figure].fmt(value) : String(value);
  }

  // A threshold with the way that counts: "±1.00°" either way, "-40.0 %" for a fall.
  function thresholdText(limit) {
    const text = figureText(limit.figure, Math.abs(limit.threshold)).replace(/^\+/, "");
    return limit.direction === "both" ? `±${text}` : limit.direction === "below" ? `-${text}` : text;
  }

  // The figure as a share of its threshold, the way that counts (cis/drift/alerts.py, Limit.excess).
  function share(limit, value) {
    if (value === null || value === undefined) return null;
    const counted = limit.direction === "above" ? value : limit.direction === "below" ? -value : Math.abs(value);
    return counted / limit.threshold;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // Put ``rows`` in a table body; with none, one row across the table that says ``none``.
  function fillTable(body, rows, none) {
    if (rows.length) {
      body.replaceChildren(...rows);
      return;
    }
    const td = cell(none, "table-empty");
    td.colSpan = body.parentElement.tHead.rows[0].cells.length;
    const tr = document.createElement("tr");
    tr.append(td);
    body.replaceChildren(tr);
  }

  function showFrame(img, none, url, alt) {
    if (!url) {
      img.hidden = true;
      img.removeAttribute("src");
      none.hidden = false;
      return;
    }
    if (img.getAttribute("src") !== url) img.src = url;
    img.alt = alt;
    img.hidden = false;
    none.hidden = true;
  }

  function renderState(data) {
    const raised = data.alerts.map((a) => alertName(a.alert));
    let text = "Steady";
    let level = "ok";
    if (data.enabled === null || data.enabled === undefined) [text, level] = ["No drift data from this camera", ""];
    else if (!data.enabled) [text, level] = ["Drift checks off", ""];
    else if (raised.length) [text, level] = [`Drifting: ${raised.join(", ")}`, "error"];
    else if (!data.reference) [text, level] = ["No reference frame", "warn"];
    refs.state.textContent = text;
    refs.state.dataset.level = level;
    const parts = [];
    if (data.checked_at) parts.push(`checked ${mfg.localTime(data.checked_at)}`);
    if (data.enabled && data.every_s) parts.push(`every ${data.every_s} s`);
    if (data.checks !== null && data.checks !== undefined) parts.push(`${mfg.fmtInt(data.checks)} checks since the start`);
    refs.checked.textContent = parts.join(" · ");
  }

  function renderSetup(data) {
    refs.setup.hidden = Boolean(data.reference) || data.enabled === false;
    const module = data.module_id || "<module>";
    refs.module.textContent = data.module_id || "(the camera's CIS module)";
    refs.command.textContent = "az iot hub invoke-module-method --hub-name <hub> --device-id <device> "
      + `--module-id ${module} --method-name set_reference --method-payload '{"timeout_s": 10}'`;
    refs.devCommand.textContent = `mfgvision edgehub --state data/demo/edgehub call ${module} set_reference '{}'`;
  }

  function renderFrames(data) {
    const ref = data.reference;
    const cur = data.current;
    showFrame(refs.reference, refs.noReference, ref && ref.image_url, "Reference frame");
    refs.referenceTime.textContent = ref && ref.taken_at ? `taken ${mfg.localTime(ref.taken_at)}` : "";
    showFrame(refs.current, refs.noCurrent, cur && cur.image_url, "Latest checked frame");
    refs.currentTime.textContent = cur && cur.checked_at ? mfg.localTime(cur.checked_at) : "";
    refs.notes.hidden = data.notes.length === 0;
    refs.notes.textContent = data.notes.join(" · ");
  }

  function renderFigures(data) {
    const rows = [];
    for (const limit of data.limits) {
      if (!(limit.figure in data.figures)) continue;
      const value = data.figures[limit.figure];
      const s = share(limit, value);
      const tr = document.createElement("tr");
      tr.dataset.figure = limit.figure;
      tr.dataset.level = s === null || s > 1 ? "past" : s < limit.clear_below / limit.threshold ? "clear" : "near";
      tr.append(
        cell(figureName(limit.figure)),
        cell(figureText(limit.figure, value), "num"),
        cell(thresholdText(limit), "num"),
        cell(s === null ? "past" : `${Math.round(s * 100)} %`, "num"),
      );
      rows.push(tr);
    }
    fillTable(refs.figures, rows, "No figures yet");
  }

  function renderAlerts(data) {
    const items = data.alerts.map((a) => {
      const li = document.createElement("li");
      const name = document.createElement("b");
      name.textContent = alertName(a.alert);
      const when = document.createElement("time");
      when.dateTime = a.raised_at || "";
      when.textContent = a.raised_at ? mfg.localTime(a.raised_at) : "";
      const what = document.createElement("span");
      const limit = data.limits.find((l) => l.figure === a.figure);
      const threshold = limit ? thresholdText(limit) : figureText(a.figure, a.threshold);
      what.textContent = `${figureName(a.figure)} ${figureText(a.figure, a.value)} (threshold ${threshold})`;
      li.append(name, " since ", when, " · ", what);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "None raised";
      items.push(li);
    }
    refs.alerts.replaceChildren(...items);
    const rows = data.changes.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.state = c.state;
      tr.append(
        cell(mfg.localTime(c.at)),
        cell(alertName(c.alert)),
        cell(c.state),
        cell(`${figureName(c.figure)} ${figureText(c.figure, c.value)}`, "num"),
      );
      return tr;
    });
    fillTable(refs.changes, rows, "No alert raised or cleared in this window");
  }

  // Charts ------------------------------------------------------------------------------------
  const chartFont = { family: getComputedStyle(document.body).fontFamily, color: "#c9d4e3", size: 13 };
  const axis = { gridcolor: "#243041", zerolinecolor: "#2a3647", linecolor: "#2a3647", tickfont: { size: 12 } };
  const plotConfig = { displayModeBar: false, responsive: true };

  function layout(data, extra) {
    return {
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: chartFont,
      margin: { l: 52, r: 10, t: 8, b: 36 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 12 } },
      xaxis: { ...axis, type: "date", range: [mfg.plotlyTime(data.window.from), mfg.plotlyTime(data.window.to)] },
      hoverlabel: { bgcolor: "#1c2430", bordercolor: "#38bdf8", font: { color: "#e9eef5" } },
      ...extra,
    };
  }

  function note(text) {
    return [{ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { size: 15, color: "#9aa8ba" } }];
  }

  function hline(y, dash, colour) {
    return { type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: colour, width: 1.5, dash } };
  }

  function drawFigures(data) {
    const x = data.history.map((p) => mfg.plotlyTime(p.at));
    const traces = [];
    let top = 0;
    data.limits.forEach((limit, index) => {
      if (!data.history.some((p) => limit.figure in p.figures)) return;
      const y = data.history.map((p) => {
        const s = share(limit, p.figures[limit.figure]);
        if (s !== null) top = Math.max(top, s * 100);
        return s === null ? null : s * 100;
      });
      traces.push({
        type: "scatter",
        mode: data.history.length > 40 ? "lines" : "lines+markers",
        name: figureName(limit.figure),
        x,
        y,
        customdata: data.history.map((p) => figureText(limit.figure, p.figures[limit.figure])),
        line: { color: COLOURS[index % COLOURS.length], width: 2 },
        marker: { size: 5 },
        hovertemplate: `${figureName(limit.figure)}: %{customdata}<br>%{y:.0f} % of its threshold<extra></extra>`,
      });
    });
    if (data.changes.length) {
      traces.push({
        type: "scatter",
        mode: "markers",
        name: "alerts",
        x: data.changes.map((c) => mfg.plotlyTime(c.at)),
        y: data.changes.map(() => 100),
        text: data.changes.map((c) => `${alertName(c.alert)} ${c.state}: ${figureName(c.figure)} ${figureText(c.figure, c.value)}`),
        marker: {
          size: 12,
          symbol: data.changes.map((c) => (c.state === "raised" ? "triangle-up" : "triangle-down")),
          color: data.changes.map((c) => (c.state === "raised" ? "#ef4444" : "#22c55e")),
        },
        hovertemplate: "%{text}<extra></extra>",
      });
    }
    const clear = data.limits.length ? (100 * data.limits[0].clear_below) / data.limits[0].threshold : 70;
    Plotly.react(document.getElementById("chart-drift"), traces, layout(data, {
      yaxis: { ...axis, range: [0, Math.min(Math.max(130, top * 1.1), 400)], ticksuffix: " %" },
      shapes: traces.length ? [hline(100, "dash", "#ef4444"), hline(clear, "dot", "#22c55e")] : [],
      annotations: traces.length ? [] : note("No drift check in this window"),
      showlegend: traces.length > 0,
    }), plotConfig);
  }

  function drawNgRate(data) {
    const rated = data.history.filter((p) => p.ng_rate);
    const x = rated.map((p) => mfg.plotlyTime(p.at));
    const series = (key, name, colour, dash) => ({
      type: "scatter",
      mode: rated.length > 40 ? "lines" : "lines+markers",
      name,
      x,
      y: rated.map((p) => 100 * p.ng_rate[key]),
      line: { color: colour, width: 2, dash },
      marker: { size: 5 },
      hovertemplate: `${name}: %{y:.1f} %<extra></extra>`,
    });
    const traces = rated.length ? [series("recent", "recent window", "#ef4444", "solid"), series("baseline", "baseline", "#9aa8ba", "dash")] : [];
    const b = data.baseline;
    const waiting = b && b.of ? `The model's figures start once its baseline is complete (${mfg.fmtInt(b.inferences)} of ${mfg.fmtInt(b.of)} inferences) and its window is full` : "No model figures in this window";
    Plotly.react(document.getElementById("chart-ng"), traces, layout(data, {
      yaxis: { ...axis, rangemode: "tozero", ticksuffix: " %" },
      annotations: traces.length ? [] : note(waiting),
      showlegend: traces.length > 0,
    }), plotConfig);
  }

  // Polling -----------------------------------------------------------------------------------
  const getWindow = mfg.bindWindowPicker(() => poller.now());
  mfg.writeWindow(getWindow());
  const poller = mfg.poll({
    url: () => `${root.dataset.api}?${mfg.windowQuery(getWindow())}`,
    everyMs: pollMs,
    timeoutMs: 15000,
    render(data) {
      renderState(data);
      renderSetup(data);
      renderFrames(data);
      renderFigures(data);
      renderAlerts(data);
      if (typeof Plotly !== "undefined") {
        drawFigures(data);
        drawNgRate(data);
        root.dataset.chartsReady = "true";
      }
      root.dataset.loaded = "true";
    },
  });
})();
