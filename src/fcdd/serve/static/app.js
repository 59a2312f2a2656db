// Upload page: send the chosen image to POST /predict and show verdict and overlay.
// document.body.dataset.state is idle | busy | done | error, so tests can wait for it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), input = $("file"), button = $("submit"), drop = $("drop");
  let inputUrl = null;

  function setState(state, message) {
    document.body.dataset.state = state;
    $("status").textContent = message || "";
  }

  function fmt(value) {
    return value === null || value === undefined ? "n/a" : Number(value).toPrecision(4);
  }

  fetch("/health").then((r) => r.json()).then((h) => {
    const m = h.model;
    $("model").textContent = `${m.objective} / ${m.net}, ${m.image_size}x${m.image_size} px, ` +
      `threshold ${fmt(m.threshold)}, on ${m.device}; uploads up to ${(h.limits.max_upload_bytes / 1048576).toFixed(1)} MB`;
  }).catch(() => { $("model").textContent = "model information unavailable"; });

  async function send(file) {
    setState("busy", `checking ${file.name}\u2026`);
    button.disabled = true;
    $("result").hidden = true;
    const body = new FormData();
    body.append("file", file, file.name);
    try {
      const response = await fetch("/predict", { method: "POST", body });
      const data = await response.json().catch(() => ({ detail: response.statusText }));
      if (!response.ok) {
        const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
        setState("error", `${response.status}: ${detail}`);
        return;
      }
      show(file, data);
    } catch (err) {
      setState("error", `request failed: ${err}`);
    } finally {
      button.disabled = !input.files.length;
    }
  }

  function show(file, data) {
    const verdict = $("verdict");
    verdict.textContent = data.verdict ? data.verdict.toUpperCase() : "no threshold: score only";
    verdict.className = data.verdict || "";
    $("score").textContent = fmt(data.score);
    $("threshold").textContent = fmt(data.threshold);
    $("pixels").textContent = data.anomalous_pixel_fraction === null ? "n/a"
      : `${(100 * data.anomalous_pixel_fraction).toFixed(1)} %`;
    if (inputUrl) URL.revokeObjectURL(inputUrl);
    inputUrl = URL.createObjectURL(file);
    $("input").src = inputUrl;
    const overlay = $("overlay");
    overlay.onload = () => setState("done", `${file.name}: ${data.width}x${data.height} px in ${data.seconds} s`);
    overlay.onerror = () => setState("error", "the overlay image could not be shown");
    overlay.src = "data:image/png;base64," + data.overlay_png;
    $("result").hidden = false;
  }

  input.addEventListener("change", () => {
    button.disabled = !input.files.length;
    if (input.files.length) send(input.files[0]);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.files.length) send(input.files[0]);
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      send(input.files[0]);
    }
  });
})();
