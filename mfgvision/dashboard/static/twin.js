// Twin configuration tool: after a change is sent, follow the module's reported properties until it
// acknowledges (applied_version) or refuses (error) the new desired version; keep the module's own
// state and each camera's current frame up to date; show only the settings that apply to the chosen
// camera type (the server renders every setting and ignores those that do not apply).
(() => {
  "use strict";
  const root = document.getElementById("module");
  if (!root) return;
  const ack = document.getElementById("ack");
  const moduleState = document.getElementById("module-state");
  const reasons = document.getElementById("reasons");
  const reported = document.getElementById("reported");
  const frame = document.getElementById("frame");
  const form = document.getElementById("settings");
  const sent = Number(root.dataset.sent || 0);
  let tries = 0;

  function localTimes(scope) {
    for (const el of scope.querySelectorAll("time[datetime]")) {
      el.textContent = new Date(el.getAttribute("datetime")).toLocaleString();
    }
  }

  // A setting with data-shown-when applies only while the named inputs hold one of its values;
  // one that does not apply is hidden and disabled, so the browser does not send it.
  function applyShownWhen() {
    if (!form) return;
    for (const field of form.querySelectorAll("[data-shown-when]")) {
      const rules = JSON.parse(field.dataset.shownWhen);
      // In a camera's section the input is named cam<i>.<key>; left empty, the module's value applies.
      const scope = field.closest("[data-scope]")?.dataset.scope || "";
      const applies = Object.entries(rules).every(([name, allowed]) => {
        const input = form.elements.namedItem(scope + name);
        const value = input === null ? null : input.value || input.dataset.inherited || "";
        return value !== null && allowed.includes(value);
      });
      field.hidden = !applies;
      for (const input of field.querySelectorAll("input, select, textarea")) input.disabled = !applies;
    }
  }

  function show(level, text) {
    ack.className = `state ${level}`;
    ack.textContent = text;
  }

  function showModule(module) {
    if (!moduleState) return;
    moduleState.className = `state ${module ? module.level : "warn"}`;
    moduleState.textContent = module ? `Module: ${module.label}` : "Module state not reported";
    const items = module ? module.reasons : [];
    reasons.replaceChildren(...items.map((reason) => {
      const li = document.createElement("li");
      li.textContent = reason;
      return li;
    }));
    reasons.hidden = items.length === 0;
  }

  function showFrame(frame, info) {
    if (!frame || !info || (info.captured_at || "") === frame.dataset.captured) return;
    frame.dataset.captured = info.captured_at || "";
    const image = frame.querySelector(".frame-image");
    const note = frame.querySelector(".frame-note");
    const head = frame.querySelector(".panel-head");
    head.querySelector("time")?.remove();
    if (info.url) {
      image.src = info.url;
      const time = document.createElement("time");
      time.className = "hint";
      time.setAttribute("datetime", info.captured_at);
      head.append(time);
      localTimes(head);
    }
    image.hidden = !info.url;
    note.textContent = info.note || "";
    note.hidden = !info.note;
  }

  function showOutcome(twin) {
    if (root.dataset.outcome) return;
    const error = twin.error;
    if (sent && error && error.version === sent) {
      show("error", `Refused version ${sent}: ${error.message}`);
      root.dataset.outcome = "refused";
    } else if (sent && twin.applied_version !== null && twin.applied_version >= sent) {
      show("ok", `Applied version ${twin.applied_version}`);
      root.dataset.outcome = "applied";
    } else if (sent) {
      show("warn", `Sent version ${sent}; waiting for the module…`);
    } else {
      show(twin.summary.level, twin.summary.text);
    }
  }

  async function poll() {
    tries += 1;
    try {
      const response = await fetch(root.dataset.api, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const twin = await response.json();
      reported.textContent = JSON.stringify(twin.reported, null, 2);
      showOutcome(twin);
      showModule(twin.summary.module);
      showFrame(frame, twin.frame);
      for (const panel of document.querySelectorAll("[data-camera-frame]")) {
        showFrame(panel, (twin.cameras || {})[panel.dataset.cameraFrame]);
      }
    } catch (err) {
      if (!root.dataset.outcome) show("warn", `Cannot read the twin (${err.message}); retrying`);
    }
    setTimeout(poll, tries < 30 ? 1000 : 5000);
  }

  if (form) form.addEventListener("change", applyShownWhen);
  applyShownWhen();
  localTimes(document);
  poll();
})();
