// A camera's zones drawn over a frame: faint outlined polygons with their names, the zones a fired
// rule names highlighted (NG colour, or the alarm colour when only alarms fired there).
(() => {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";

  function svgElement(name, attributes) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
    return el;
  }

  // Each zone a fired rule names, and what the firings there yield: "NG" over "alarm".
  function firedZones(rules) {
    const yields = new Map();
    for (const rule of rules || []) {
      if (rule.zone !== null && yields.get(rule.zone) !== "NG") yields.set(rule.zone, rule.yields);
    }
    return yields;
  }

  // Draw ``zones`` (normalised points) into ``svg``, which covers a frame of ``frame`` pixels;
  // ``rules`` are the rules that fired on the inspection. Returns how many zones were drawn.
  window.mfg.drawZones = function drawZones(svg, zones, frame, rules) {
    const width = Math.max(1, frame.width);
    const height = Math.max(1, frame.height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const fired = firedZones(rules);
    const fontSize = Math.max(width, height) * 0.018;
    const drawn = zones.map((zone) => {
      const points = zone.points.map(([x, y]) => [x * width, y * height]);
      const group = svgElement("g", { class: "zone", "data-zone": zone.name });
      if (fired.has(zone.name)) {
        group.classList.add("fired");
        group.dataset.yields = fired.get(zone.name);
      }
      group.append(svgElement("polygon", { points: points.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" ") }));
      // The name just inside the zone's topmost point, leaning away from the frame's right edge.
      const [x, y] = points.reduce((top, p) => (p[1] < top[1] || (p[1] === top[1] && p[0] < top[0]) ? p : top));
      const right = x > width * 0.75;
      const name = svgElement("text", {
        x: (right ? x - fontSize * 0.3 : x + fontSize * 0.3).toFixed(1),
        y: (y + fontSize * 1.1).toFixed(1),
        "font-size": fontSize.toFixed(1),
        "text-anchor": right ? "end" : "start",
      });
      name.textContent = zone.name;
      group.append(name);
      return group;
    });
    svg.replaceChildren(...drawn);
    return drawn.length;
  };
})();
