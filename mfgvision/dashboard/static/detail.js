// Detail page: one inference, its image with boxes and the camera's zones drawn in the browser,
// detections and raw JSON.
(() => {
  "use strict";

  const mfg = window.mfg;
  const root = document.getElementById("detail");
  const refs = {};
  for (const el of root.querySelectorAll("[data-ref]")) refs[el.dataset.ref] = el;

  function fact(dl, name, value) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    div.append(dt, dd);
    dl.append(div);
  }

  function drawBoxes(item) {
    const boxes = item.detections.map((d) => {
      const [x1, y1, x2, y2] = d.box_norm;
      const box = document.createElement("div");
      box.className = "box";
      if (y1 < 0.06) box.classList.add("below");
      box.style.left = `${(x1 * 100).toFixed(3)}%`;
      box.style.top = `${(y1 * 100).toFixed(3)}%`;
      box.style.width = `${((x2 - x1) * 100).toFixed(3)}%`;
      box.style.height = `${((y2 - y1) * 100).toFixed(3)}%`;
      box.style.setProperty("--c", mfg.classColour(d.label_id));
      const tag = document.createElement("span");
      tag.textContent = `${d.label} ${d.probability_pct.toFixed(0)}%`;
      box.append(tag);
      return box;
    });
    refs.boxes.replaceChildren(...boxes);
  }

  // The camera's zones as its settings have them now, which need not be those the inspection was
  // judged with: the note says so, with both settings versions when they differ.
  function drawZones(item) {
    const zones = item.zones.items;
    const drawn = mfg.drawZones(refs.zones, zones, item.frame, item.rules);
    refs.zonesToggle.disabled = drawn === 0;
    refs.zonesToggle.addEventListener("change", () => refs.zones.classList.toggle("off", !refs.zonesToggle.checked));
    refs.zonesNote.hidden = drawn === 0;
    if (!drawn) return;
    const now = item.zones.settings_version;
    let note = `Zones as the camera's current settings have them${now === null ? "" : ` (version ${now})`}`;
    if (now !== null && item.settings_version !== null && now !== item.settings_version) {
      note += `; this inspection was judged with version ${item.settings_version}`;
    }
    refs.zonesNote.textContent = `${note}.`;
  }

  function render(item) {
    const created = new Date(item.created);
    document.title = `${item.camera_name} ${created.toLocaleString()} · ${document.title.split(" · ").pop()}`;
    refs.heading.textContent = `${item.camera_name} · ${created.toLocaleString()}`;
    refs.verdict.textContent = item.verdict;
    refs.verdict.dataset.verdict = item.verdict;
    refs.verdict.hidden = false;
    if (document.referrer && new URL(document.referrer).pathname.endsWith("/history")) {
      refs.back.href = document.referrer;
    }

    // Prefer the raw frame with boxes drawn here (they can be switched off); else the annotated one.
    const raw = item.images.raw;
    const annotated = item.images.annotated;
    const src = raw || annotated;
    refs.layout.hidden = false;
    if (src) {
      const aspect = item.frame.width / Math.max(1, item.frame.height);
      refs.figure.style.width = `min(100%, calc(74vh * ${aspect.toFixed(4)}))`;
      refs.image.src = src;
      refs.image.alt = `${item.camera_name} frame`;
      refs.openImage.href = annotated || raw;
      refs.openImage.hidden = false;
      drawZones(item);
    } else {
      refs.figure.replaceChildren(Object.assign(document.createElement("p"), { className: "hint", textContent: "No image stored for this inspection." }));
      refs.openImage.hidden = true;
    }
    if (raw) {
      drawBoxes(item);
      refs.boxesToggle.disabled = item.detections.length === 0;
      refs.imageNote.textContent = item.detections.length ? "Boxes drawn on the raw frame" : "Raw frame, nothing detected";
    } else {
      refs.boxesToggle.checked = Boolean(annotated);
      refs.boxesToggle.disabled = true;
      refs.imageNote.textContent = annotated ? "Annotated image (raw frame not stored)" : "";
    }
    refs.boxesToggle.addEventListener("change", () => refs.boxes.classList.toggle("off", !refs.boxesToggle.checked));

    refs.rule.textContent = item.verdict_rule;
    const dl = refs.facts;
    dl.replaceChildren();
    fact(dl, "Camera", item.camera_name === item.camera_id ? item.camera_id : `${item.camera_name} (${item.camera_id})`);
    fact(dl, "Time", created.toLocaleString());
    fact(dl, "Model", `${item.model_name} v${item.model_version}`);
    fact(dl, "Threshold", item.prob_threshold === null ? "not recorded" : `${item.prob_threshold} (prob_threshold)`);
    fact(dl, "Settings version", item.settings_version === null ? "not recorded" : `${item.settings_version} (desired twin $version)`);
    fact(dl, "Inference", `${item.inferencing_time_ms.toFixed(1)} ms`);
    fact(dl, "Frame", `${item.frame.width} × ${item.frame.height} px`);
    fact(dl, "Detections", String(item.detections.length));
    fact(dl, "Inspection id", item.unique_id);

    const rows = item.detections.map((d) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = mfg.classColour(d.label_id);
      name.append(swatch, d.label);
      const p = document.createElement("td");
      p.className = "num";
      p.textContent = `${d.probability_pct.toFixed(1)} %`;
      const box = document.createElement("td");
      box.className = "num";
      box.textContent = d.box.map((v) => Math.round(v)).join(", ");
      tr.append(name, p, box);
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 3;
      td.className = "hint";
      td.textContent = "Nothing detected: this part passed.";
      tr.append(td);
      rows.push(tr);
    }
    refs.detections.replaceChildren(...rows);
    refs.json.textContent = JSON.stringify(item, null, 2);
    root.dispatchEvent(new CustomEvent("inspection-loaded", { detail: item }));
    root.dataset.loaded = "true";
  }

  mfg.getJSON(root.dataset.api)
    .then(render)
    .catch((error) => {
      refs.heading.textContent = "Inspection not available";
      refs.error.textContent = error.message;
      refs.error.hidden = false;
    });
})();
