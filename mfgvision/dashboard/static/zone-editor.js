// Twin configuration tool: draw a camera's zones on its current frame. The editor keeps the form's
// `zones` input (JSON: name -> [[x, y], ...]) in step with what is drawn, in the coordinates the
// settings use: pixels of `zones_frame` when that is set, else 0..1 of the frame. Nothing is sent
// until the form is reviewed and applied, like any other setting.
//
// New zone: name it, click on the image to add points, Finish (or click the first point, or press
// Enter). A selected zone shows its points: drag one to move it, drag the small mid-edge point to add
// one, double-click a point to remove it; drag inside the zone to move it whole.
(() => {
  "use strict";
  const form = document.getElementById("settings");
  if (!form) return;

  const SVG = "http://www.w3.org/2000/svg";
  const NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$/;
  const MAX_ZONES = 32;
  const MAX_POINTS = 64;
  const HANDLE_PX = 9;
  const DOUBLE_CLICK_MS = 450;

  const input = (name) => (name ? form.elements.namedItem(name) : null);
  const svgNode = (tag, attrs) => {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  };

  // The frame the points are pixels of ([width, height]), or null for 0..1.
  function frameSize(text) {
    const numbers = (text || "").match(/\d+/g) || [];
    if (numbers.length !== 2) return null;
    const [w, h] = numbers.map(Number);
    return w >= 1 && h >= 1 ? [w, h] : null;
  }

  // Zones from the input's JSON, in its order; null when it is not a zones object.
  function parseZones(text) {
    if (!text.trim()) return [];
    let value;
    try { value = JSON.parse(text); } catch (_) { return null; }
    if (!value || typeof value !== "object" || Array.isArray(value)) return null;
    const zones = [];
    for (const [name, points] of Object.entries(value)) {
      const ok = Array.isArray(points) && points.every((p) => Array.isArray(p) && p.length === 2
        && p.every((v) => typeof v === "number" && Number.isFinite(v)));
      if (!ok) return null;
      zones.push({ name, points: points.map(([x, y]) => [x, y]) });
    }
    return zones;
  }

  class ZoneEditor {
    constructor(host) {
      this.host = host;
      this.zonesInput = input(host.dataset.zones);
      this.frameInput = input(host.dataset.zonesFrame);
      this.rulesInput = input(host.dataset.rules);
      this.inheritZones = input(host.dataset.inheritZones);
      this.inheritFrame = input(host.dataset.inheritZonesFrame);
      this.stage = host.closest(".current-frame").querySelector(".frame-stage");
      this.image = this.stage.querySelector(".frame-image");
      this.zones = [];
      this.selected = -1;
      this.drawing = false;
      this.inherited = false;
      this.broken = false;
      this.written = null;
      this.drag = null;
      this.lastTap = null;
      this.build();
      this.load();
      new ResizeObserver(() => this.render()).observe(this.stage);
      this.image.addEventListener("load", () => this.render());
      for (const el of [this.zonesInput, this.frameInput, this.inheritZones, this.inheritFrame]) {
        if (el) el.addEventListener("change", () => this.load());
      }
    }

    build() {
      this.layer = svgNode("svg", { class: "zone-layer", role: "img", "aria-label": "Zones" });
      this.stage.append(this.layer);
      this.host.innerHTML = `
        <div class="zone-bar">
          <span class="zone-title">Zones</span>
          <span class="zone-list" role="list"></span>
          <button type="button" class="button ghost" data-act="new">New zone</button>
        </div>
        <div class="zone-bar" data-ref="selected" hidden>
          <label>Name <input data-ref="name" maxlength="40" autocomplete="off" spellcheck="false"></label>
          <button type="button" class="button" data-act="finish">Finish</button>
          <button type="button" class="button ghost" data-act="delete">Delete zone</button>
        </div>
        <p class="hint zone-hint" data-ref="hint" aria-live="polite"></p>`;
      this.list = this.host.querySelector(".zone-list");
      this.bar = this.host.querySelector('[data-ref="selected"]');
      this.nameInput = this.host.querySelector('[data-ref="name"]');
      this.hint = this.host.querySelector('[data-ref="hint"]');
      this.host.querySelector('[data-act="new"]').addEventListener("click", () => this.newZone());
      this.host.querySelector('[data-act="finish"]').addEventListener("click", () => this.finish());
      this.host.querySelector('[data-act="delete"]').addEventListener("click", () => this.remove());
      this.nameInput.addEventListener("input", () => this.rename(this.nameInput.value.trim()));
      this.nameInput.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();  // not a submit of the settings form
          this.nameInput.blur();
        }
      });
      this.layer.addEventListener("pointerdown", (event) => this.pointerDown(event));
      this.layer.addEventListener("pointermove", (event) => this.pointerMove(event));
      this.layer.addEventListener("pointerup", () => this.pointerUp());
      this.layer.addEventListener("pointercancel", () => this.pointerUp());
      document.addEventListener("keydown", (event) => {
        if (!this.drawing || event.target === this.nameInput) return;
        if (event.key === "Enter" || event.key === "Escape") {
          event.preventDefault();
          this.finish();
        }
      });
    }

    // The coordinates of the settings: the zones_frame in force, else 0..1.
    space() {
      const own = this.frameInput ? frameSize(this.frameInput.value) : null;
      const inherited = this.inheritFrame && !(this.frameInput && this.frameInput.value.trim())
        ? frameSize(this.inheritFrame.value) : null;
      return own || inherited || [1, 1];
    }

    load() {
      const own = this.zonesInput ? this.zonesInput.value : "";
      if (this.written !== null && own === this.written) return this.render();
      this.inherited = Boolean(this.inheritZones) && !own.trim();
      const zones = parseZones(this.inherited ? this.inheritZones.value : own);
      this.broken = zones === null;
      this.zones = zones || [];
      this.selected = -1;
      this.drawing = false;
      this.render();
    }

    // What is drawn, into the input (zones still being drawn with fewer than 3 points left out).
    write() {
      if (!this.zonesInput) return;
      const [w, h] = this.space();
      const round = w === 1 && h === 1 ? (v) => Math.round(v * 10000) / 10000 : (v) => Math.round(v * 10) / 10;
      const out = {};
      for (const zone of this.zones) {
        if (zone.points.length >= 3) out[zone.name] = zone.points.map(([x, y]) => [round(x), round(y)]);
      }
      this.inherited = false;
      this.written = JSON.stringify(out);
      this.zonesInput.value = this.written;
      this.zonesInput.dispatchEvent(new Event("change", { bubbles: true }));
    }

    // Stage pixels <-> setting coordinates.
    toStage([x, y]) {
      const [w, h] = this.space();
      return [(x / w) * this.stage.clientWidth, (y / h) * this.stage.clientHeight];
    }

    fromEvent(event) {
      const box = this.layer.getBoundingClientRect();
      const [w, h] = this.space();
      const fx = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
      const fy = Math.min(Math.max((event.clientY - box.top) / box.height, 0), 1);
      return [fx * w, fy * h];
    }

    freshName() {
      const taken = new Set(this.zones.map((z) => z.name));
      let n = this.zones.length + 1;
      while (taken.has(`zone${n}`)) n += 1;
      return `zone${n}`;
    }

    newZone() {
      if (this.broken) return;
      if (this.drawing) this.finish();
      if (this.zones.length >= MAX_ZONES) return this.say(`At most ${MAX_ZONES} zones.`);
      this.zones.push({ name: this.freshName(), points: [] });
      this.selected = this.zones.length - 1;
      this.drawing = true;
      this.render();
      this.nameInput.focus({ preventScroll: true });
      this.nameInput.select();
    }

    finish() {
      const zone = this.zones[this.selected];
      this.drawing = false;
      if (zone && zone.points.length < 3) {
        this.zones.splice(this.selected, 1);
        this.selected = -1;
        this.render();
        return this.say("A zone needs at least 3 points: it was not kept.");
      }
      this.write();
      this.render();
    }

    remove() {
      if (this.selected < 0) return;
      this.zones.splice(this.selected, 1);
      this.selected = -1;
      this.drawing = false;
      this.write();
      this.render();
    }

    // A new name, once valid and free; the rules of this scope that name the zone follow it.
    rename(name) {
      const zone = this.zones[this.selected];
      if (!zone || name === zone.name) return this.nameInput.removeAttribute("aria-invalid");
      const problem = !NAME.test(name) ? "Letters, digits and _ . - (starting with a letter or digit), at most 40."
        : this.zones.some((z) => z.name === name) ? `Another zone is named ${name}.` : null;
      this.nameInput.setAttribute("aria-invalid", String(Boolean(problem)));
      if (problem) return this.say(problem);
      const old = zone.name;
      zone.name = name;
      this.renameInRules(old, name);
      if (zone.points.length >= 3) this.write();
      this.render();
    }

    renameInRules(old, name) {
      if (!this.rulesInput || !this.rulesInput.value.trim()) return;
      let rules;
      try { rules = JSON.parse(this.rulesInput.value); } catch (_) { return; }
      if (!rules || typeof rules !== "object") return;
      let changed = false;
      for (const rule of Object.values(rules)) {
        if (rule && Array.isArray(rule.zones) && rule.zones.includes(old)) {
          rule.zones = rule.zones.map((z) => (z === old ? name : z));
          changed = true;
        }
      }
      if (changed) this.rulesInput.value = JSON.stringify(rules);
    }

    // Pointer: add a point while drawing; else pick a zone, a point, a mid-edge point or the body.
    pointerDown(event) {
      if (this.broken || event.button !== 0) return;
      const target = event.target;
      const at = this.fromEvent(event);
      if (this.drawing) {
        const zone = this.zones[this.selected];
        if (zone.points.length >= 3 && this.pointAt(event) === 0) return this.finish();
        if (zone.points.length >= MAX_POINTS) return this.say(`At most ${MAX_POINTS} points.`);
        zone.points.push(at);
        this.render();
        return;
      }
      const vertex = this.pointAt(event);
      const zoneIndex = vertex >= 0 ? this.selected
        : target.dataset.zone === undefined ? -1 : Number(target.dataset.zone);
      if (zoneIndex !== this.selected) {
        this.selected = zoneIndex;
        this.render();
      }
      if (zoneIndex < 0) return;
      const zone = this.zones[zoneIndex];
      // A second press on the same point soon after the first: a double-click, which removes it.
      const tap = this.lastTap;
      this.lastTap = vertex >= 0 ? { vertex, at: event.timeStamp } : null;
      if (vertex >= 0 && tap && tap.vertex === vertex && event.timeStamp - tap.at < DOUBLE_CLICK_MS) {
        this.lastTap = null;
        return this.dropPoint(vertex);
      }
      if (vertex >= 0) {
        this.drag = { kind: "point", index: vertex };
      } else if (target.dataset.mid !== undefined) {
        if (zone.points.length >= MAX_POINTS) return this.say(`At most ${MAX_POINTS} points.`);
        const index = Number(target.dataset.mid) + 1;
        zone.points.splice(index, 0, at);
        this.drag = { kind: "point", index };
      } else {
        this.drag = { kind: "zone", from: at, points: zone.points.map((p) => [...p]) };
      }
      this.drag.moved = target.dataset.mid !== undefined;
      this.layer.setPointerCapture(event.pointerId);
      this.render();
    }

    pointerMove(event) {
      if (!this.drag) return;
      const zone = this.zones[this.selected];
      const at = this.fromEvent(event);
      if (this.drag.kind === "point") {
        zone.points[this.drag.index] = at;
      } else {
        const [w, h] = this.space();
        const xs = this.drag.points.map((p) => p[0]);
        const ys = this.drag.points.map((p) => p[1]);
        const dx = Math.min(Math.max(at[0] - this.drag.from[0], -Math.min(...xs)), w - Math.max(...xs));
        const dy = Math.min(Math.max(at[1] - this.drag.from[1], -Math.min(...ys)), h - Math.max(...ys));
        zone.points = this.drag.points.map(([x, y]) => [x + dx, y + dy]);
      }
      this.drag.moved = true;
      this.render();
    }

    pointerUp() {
      if (!this.drag) return;
      const moved = this.drag.moved;
      this.drag = null;
      if (moved) this.write();
    }

    // The selected zone's point under the pointer (within its handle), or -1. Found by position:
    // the handles are drawn again on every change, so an event's target may be gone.
    pointAt(event) {
      const zone = this.zones[this.selected];
      if (!zone) return -1;
      const box = this.layer.getBoundingClientRect();
      const x = event.clientX - box.left;
      const y = event.clientY - box.top;
      let best = -1;
      let bestDistance = HANDLE_PX;
      zone.points.forEach((p, i) => {
        const [px, py] = this.toStage(p);
        const distance = Math.hypot(px - x, py - y);
        if (distance <= bestDistance) [best, bestDistance] = [i, distance];
      });
      return best;
    }

    dropPoint(index) {
      const zone = this.zones[this.selected];
      if (zone.points.length <= 3) return this.say("A zone keeps at least 3 points.");
      zone.points.splice(index, 1);
      this.write();
      this.render();
    }

    say(text) {
      this.hint.textContent = text;
      this.hint.dataset.level = "warn";
    }

    guide() {
      this.hint.dataset.level = "";
      if (this.broken) {
        this.hint.dataset.level = "error";
        return "The zones setting is not a JSON object of name -> [[x, y], ...]: fix its text under Rules to draw here.";
      }
      const [w, h] = this.space();
      const units = w === 1 && h === 1 ? "0..1 of the frame" : `pixels of a ${w} × ${h} frame (zones_frame)`;
      if (this.drawing) return `Click on the image to add points (${units}); Finish, Enter or a click on the first point closes the zone.`;
      if (this.selected >= 0) return "Drag a point to move it, the small mid-edge point to add one, inside the zone to move it; double-click a point to remove it.";
      if (this.inherited && this.zones.length) return "The module's zones (this camera has none of its own): a change here gives the camera its own.";
      return this.zones.length ? `Select a zone to change it. Points in ${units}.` : `No zones: New zone, then click on the image. Points in ${units}.`;
    }

    render() {
      if (!this.layer) return;
      const shown = !this.image.hidden;
      this.stage.classList.toggle("blank", !shown);
      const [w, h] = this.space();
      this.stage.style.aspectRatio = shown ? "" : `${w === 1 && h === 1 ? 16 / 9 : w / h}`;
      const nodes = [];
      this.zones.forEach((zone, index) => {
        const points = zone.points.map((p) => this.toStage(p));
        const selected = index === this.selected;
        const cls = `zone${selected ? " selected" : ""}${this.inherited ? " inherited" : ""}`;
        const shape = this.drawing && selected ? "polyline" : "polygon";
        if (points.length) {
          nodes.push(svgNode(shape, { class: cls, points: points.map((p) => p.join(",")).join(" "), "data-zone": index }));
          const [lx, ly] = points.reduce(([ax, ay], [x, y]) => (y < ay || (y === ay && x < ax) ? [x, y] : [ax, ay]));
          const label = svgNode("text", { class: "zone-name", x: lx + 4, y: Math.max(ly - 6, 14) });
          label.textContent = zone.name;
          nodes.push(label);
        }
        if (!selected) return;
        if (!this.drawing && points.length >= 3) {
          points.forEach((p, i) => {
            const q = points[(i + 1) % points.length];
            nodes.push(svgNode("circle", { class: "zone-mid", cx: (p[0] + q[0]) / 2, cy: (p[1] + q[1]) / 2, r: 5, "data-zone": index, "data-mid": i }));
          });
        }
        points.forEach((p, i) => {
          nodes.push(svgNode("circle", { class: "zone-point", cx: p[0], cy: p[1], r: 7, "data-zone": index }));
        });
      });
      this.layer.replaceChildren(...nodes);
      this.layer.classList.toggle("drawing", this.drawing);
      this.renderList();
      this.hint.textContent = this.guide();
    }

    renderList() {
      const items = this.zones.map((zone, index) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "zone-chip";
        button.setAttribute("role", "listitem");
        button.setAttribute("aria-pressed", String(index === this.selected));
        button.textContent = zone.name;
        button.addEventListener("click", () => {
          if (this.drawing) this.finish();
          this.selected = this.zones.indexOf(zone);
          this.render();
        });
        return button;
      });
      this.list.replaceChildren(...items);
      const zone = this.zones[this.selected];
      this.bar.hidden = !zone;
      this.host.querySelector('[data-act="finish"]').hidden = !this.drawing;
      this.host.querySelector('[data-act="new"]').disabled = this.broken;
      if (zone && document.activeElement !== this.nameInput) {
        this.nameInput.value = zone.name;
        this.nameInput.removeAttribute("aria-invalid");
      }
    }
  }

  for (const host of document.querySelectorAll(".zone-editor")) new ZoneEditor(host);
})();
