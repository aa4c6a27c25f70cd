// Twin configuration tool: after a change is sent, follow the module's reported properties until it
// acknowledges (applied_version) or refuses (error) the new desired version.
(() => {
  "use strict";
  const root = document.getElementById("module");
  if (!root) return;
  const ack = document.getElementById("ack");
  const reported = document.getElementById("reported");
  const sent = Number(root.dataset.sent || 0);
  let tries = 0;

  function show(level, text) {
    ack.className = `state ${level}`;
    ack.textContent = text;
  }

  async function poll() {
    tries += 1;
    try {
      const response = await fetch(root.dataset.api, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const twin = await response.json();
      reported.textContent = JSON.stringify(twin.reported, null, 2);
      const error = twin.error;
      if (sent && error && error.version === sent) {
        show("error", `Refused version ${sent}: ${error.message}`);
        root.dataset.outcome = "refused";
        return;
      }
      if (sent && twin.applied_version !== null && twin.applied_version >= sent) {
        show("ok", `Applied version ${twin.applied_version}`);
        root.dataset.outcome = "applied";
        return;
      }
      if (sent) show("warn", `Sent version ${sent}; waiting for the module…`);
      else show(twin.summary.level, twin.summary.text);
    } catch (err) {
      show("warn", `Cannot read the twin (${err.message}); retrying`);
    }
    setTimeout(poll, tries < 30 ? 1000 : 5000);
  }
  poll();
})();
