// Detail page: an operator marks the verdict right or wrong and corrects the boxes (POSTed as JSON
// with the page's CSRF token); the stored feedback is shown when the page loads.
(() => {
  "use strict";

  const mfg = window.mfg;
  const root = document.getElementById("detail");
  const refs = {};
  for (const el of root.querySelectorAll("[data-ref]")) refs[el.dataset.ref] = el;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const WORDS = { correct: "verdict right", false_ng: "false NG", missed_defect: "missed defect" };
  let item = null;
  let boxes = [];

  function showState(feedback) {
    for (const [ref, judgement] of [["markCorrect", "correct"], ["markFalseNg", "false_ng"], ["markMissed", "missed_defect"]]) {
      refs[ref].setAttribute("aria-pressed", String(Boolean(feedback) && feedback.judgement === judgement));
    }
    if (!feedback) return;
    const who = feedback.operator ? ` by ${feedback.operator}` : "";
    const labels = feedback.boxes === null ? "model's boxes kept" : `${feedback.boxes.length} box(es) drawn`;
    refs.feedbackState.textContent = `Marked ${WORDS[feedback.judgement]}${who}, ${mfg.localTime(feedback.created)}; ${labels}. The frame is in the retraining set.`;
    refs.note.value = feedback.note || "";
  }

  async function send(body) {
    refs.feedbackError.hidden = true;
    try {
      const response = await fetch(item.feedback_url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ ...body, note: refs.note.value }),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok) throw new Error(answer && answer.error ? answer.error : `HTTP ${response.status}`);
      showState(answer);
      return answer;
    } catch (error) {
      refs.feedbackError.textContent = `Feedback not saved: ${error.message}`;
      refs.feedbackError.hidden = false;
      return null;
    }
  }

  function drawEdits() {
    refs.editBoxes.replaceChildren(...boxes.map((b) => {
      const [x1, y1, x2, y2] = b.box_norm;
      const el = document.createElement("div");
      el.className = "box";
      Object.assign(el.style, { left: `${x1 * 100}%`, top: `${y1 * 100}%`, width: `${(x2 - x1) * 100}%`, height: `${(y2 - y1) * 100}%` });
      const tag = document.createElement("span");
      tag.textContent = b.label;
      el.append(tag);
      return el;
    }));
    refs.editList.replaceChildren(...boxes.map((b, i) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${b.label} · ${b.box_norm.map((v) => v.toFixed(3)).join(", ")}`;
      const remove = Object.assign(document.createElement("button"), { type: "button", className: "button ghost", textContent: "×", title: "Remove this box" });
      remove.addEventListener("click", () => { boxes.splice(i, 1); drawEdits(); });
      li.append(text, remove);
      return li;
    }));
  }

  function startEditing() {
    const editing = refs.editor.hidden;
    refs.editor.hidden = !editing;
    refs.saveRow.hidden = !editing;
    refs.editBoxes.hidden = !editing;
    refs.boxes.classList.toggle("off", editing);
    refs.editToggle.setAttribute("aria-pressed", String(editing));
    if (editing && !boxes.length) {
      const from = item.feedback && item.feedback.boxes !== null ? item.feedback.boxes : item.detections;
      boxes = from.map((d) => ({ label: d.label, box_norm: d.box_norm.slice() }));
    }
    drawEdits();
  }

  function pointerBox(event, start) {
    const rect = refs.editBoxes.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    const x = clamp((event.clientX - rect.left) / rect.width);
    const y = clamp((event.clientY - rect.top) / rect.height);
    return start ? [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)] : [x, y];
  }

  let start = null;
  refs.editBoxes.addEventListener("pointerdown", (event) => {
    if (!refs.editLabel.value.trim()) {
      refs.editLabel.reportValidity();
      return;
    }
    start = pointerBox(event, null);
    refs.editBoxes.setPointerCapture(event.pointerId);
  });
  refs.editBoxes.addEventListener("pointerup", (event) => {
    if (!start) return;
    const box = pointerBox(event, start).map((v) => Number(v.toFixed(5)));
    start = null;
    if (box[2] - box[0] < 0.005 || box[3] - box[1] < 0.005) return; // a click, not a box
    boxes.push({ label: refs.editLabel.value.trim(), box_norm: box });
    drawEdits();
  });

  refs.markCorrect.addEventListener("click", () => send({ judgement: "correct" }));
  refs.markFalseNg.addEventListener("click", () => send({ judgement: "false_ng", boxes: [] }));
  refs.markMissed.addEventListener("click", () => {
    if (refs.editor.hidden) startEditing();
    refs.feedbackState.textContent = "Draw a box around each missed defect, then Save boxes.";
  });
  refs.editToggle.addEventListener("click", startEditing);
  refs.saveBoxes.addEventListener("click", async () => {
    const judgement = item.verdict === "NG" && !boxes.length ? "false_ng" : item.verdict === "OK" && boxes.length ? "missed_defect" : "correct";
    const saved = await send({ judgement, boxes });
    if (saved) item.feedback = saved;
  });

  root.addEventListener("inspection-loaded", (event) => {
    item = event.detail;
    showState(item.feedback);
    const noFrame = !item.images.raw;
    refs.editToggle.disabled = noFrame;
    refs.markMissed.disabled = noFrame;
    if (noFrame) refs.editToggle.title = refs.markMissed.title = "The raw frame was not stored: boxes cannot be drawn.";
    mfg.getJSON(root.dataset.labels).then((labels) => {
      refs.labelList.replaceChildren(...labels.map((l) => Object.assign(document.createElement("option"), { value: l })));
      if (!refs.editLabel.value && labels.length) refs.editLabel.value = labels[0];
    }).catch(() => {});
  });
})();
