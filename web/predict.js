// The predict view: photos (boxes, labels and probability bars), videos (progress, then the
// per-face timeline and the CSV and JSON that `ferkit predict` writes), and the webcam (live
// boxes, track ids, smoothed labels and a rolling chart of the probabilities).
import { api, el, pct, uploadWithProgress } from "./api.js";

let ready = false;

/** Sets the view up once: file picker, drag and drop, webcam button. */
export function showPredict() {
  if (ready) return;
  ready = true;
  const input = document.getElementById("files");
  input.addEventListener("change", () => handleFiles([...input.files]).finally(() => (input.value = "")));
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    document.body.classList.add("drop");
  });
  document.addEventListener("dragleave", () => document.body.classList.remove("drop"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("drop");
    if (location.hash.startsWith("#/runs")) location.hash = "#/predict";
    handleFiles([...e.dataTransfer.files]);
  });
  document.getElementById("webcam").addEventListener("click", toggleWebcam);
}

async function handleFiles(files) {
  for (const file of files) {
    if (file.type.startsWith("video/")) await showVideo(file);
    else await showPhoto(file);
  }
}

/** A result card at the top of the results. */
function card(title) {
  const box = el("div", "result");
  box.append(el("h3", "", title));
  document.getElementById("results").prepend(box);
  return box;
}

/** Probability bars of one face, classes in the model's order. */
function bars(probs) {
  const grid = el("div", "bars");
  for (const [name, p] of Object.entries(probs)) {
    const bar = el("div", "bar");
    const fill = el("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    grid.append(el("span", "", name), bar, el("span", "", pct(p)));
  }
  return grid;
}

/** Boxes and captions over a drawn image or frame; `scale` maps the API's pixels to the canvas's. */
function drawFaces(ctx, faces, scale, caption) {
  ctx.lineWidth = Math.max(2, 2 * scale);
  ctx.font = `${Math.max(12, Math.round(14 * scale))}px system-ui, sans-serif`;
  faces.forEach((f, i) => {
    const [x, y, w, h] = f.box.map((v) => v * scale);
    ctx.strokeStyle = "#22c55e";
    ctx.strokeRect(x, y, w, h);
    const text = caption(f, i);
    const tw = ctx.measureText(text).width + 8;
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(x, Math.max(0, y - 20 * scale), tw, 20 * scale);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, Math.max(14 * scale, y - 5 * scale));
  });
}

async function showPhoto(file) {
  const box = card(file.name);
  const status = el("p", "muted", "predicting...");
  box.append(status);
  try {
    const result = await api("/api/predict", { method: "POST", body: formOf(file) });
    const url = URL.createObjectURL(file);
    const img = new Image();
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the browser cannot show this image (its faces are listed below)"));
      img.src = url;
    }).catch((e) => status.replaceWith(el("p", "muted", e.message)));
    if (img.naturalWidth > 0) {
      const scale = Math.min(1, 640 / img.naturalWidth);
      const canvas = el("canvas");
      canvas.width = Math.round(img.naturalWidth * scale);
      canvas.height = Math.round(img.naturalHeight * scale);
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      drawFaces(
        ctx,
        result.faces,
        canvas.width / (result.width ?? img.naturalWidth) || scale,
        (f, i) => `#${i} ${f.label} ${pct(f.score)}`,
      );
      status.replaceWith(canvas);
    }
    URL.revokeObjectURL(url);
    if (result.error) box.append(el("p", "error", result.error));
    if (result.faces.length === 0) box.append(el("p", "muted", "no face found"));
    result.faces.forEach((f, i) => {
      box.append(el("p", "", `face #${i}: ${f.label} (${pct(f.score)}), detection ${f.detection_score ?? "-"}`), bars(f.probs));
    });
  } catch (e) {
    status.replaceWith(el("p", "error", e.message));
  }
}

function formOf(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return form;
}

/** The CSV `ferkit predict --csv` writes for a video's rows (its columns, in its order). */
function videoCsv(name, rows) {
  const classes = rows.length > 0 ? Object.keys(rows[0].probs) : [];
  const head = [
    "file",
    "frame",
    "time_s",
    "face",
    "x",
    "y",
    "w",
    "h",
    "label",
    "score",
    "label_vote",
    "label_ema",
    "detection_score",
    ...classes.map((c) => `p_${c}`),
  ];
  const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = rows.map((r) =>
    [
      name,
      r.frame,
      r.time_s,
      r.face,
      ...r.box,
      r.label,
      r.score,
      r.label_vote,
      r.label_ema,
      r.detection_score ?? "",
      ...classes.map((c) => r.probs[c]),
    ]
      .map(quote)
      .join(","),
  );
  return [head.join(","), ...lines].join("\n") + "\n";
}

function download(box, text, name, type) {
  const a = el("a", "button", `Download ${name}`);
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  box.append(a, " ");
}

async function showVideo(file) {
  const box = card(file.name);
  const status = el("p", "muted", "uploading 0 %");
  const bar = el("progress");
  bar.max = 1;
  box.append(status, bar);
  try {
    const job = `video-${Math.random().toString(36).slice(2, 10)}`;
    let uploaded = false;
    const poll = setInterval(async () => {
      if (!uploaded) return;
      const p = await api(`/api/progress/${job}`).catch(() => null);
      if (p === null || p.stage === "done") return;
      if (p.stage === "queued") status.textContent = "waiting for the server...";
      else if (p.frames > 0) {
        bar.value = Math.min(1, p.frame / p.frames);
        status.textContent = `processing frame ${p.frame} of about ${p.frames}`;
      } else status.textContent = `processing frame ${p.frame}`;
    }, 500);
    const result = await uploadWithProgress(file, `?job=${job}`, (f) => {
      bar.value = f;
      status.textContent = `uploading ${pct(f)}`;
      uploaded = f >= 1;
    }).finally(() => clearInterval(poll));
    bar.remove();
    const s = result.summary;
    status.textContent = `${s.frames} frames at ${s.fps.toFixed(2)} fps, ${s.rows} face rows in ${s.tracks} track(s), ${s.seconds} s`;
    if (result.error) box.append(el("p", "error", result.error));
    const points = result.rows.flatMap((r) => [
      { time: r.time_s, row: `#${r.face} raw`, label: r.label },
      { time: r.time_s, row: `#${r.face} vote`, label: r.label_vote },
      { time: r.time_s, row: `#${r.face} EMA`, label: r.label_ema },
    ]);
    const dt = result.rows.length > 1 ? 1 / s.fps : 0.04;
    box.append(
      Plot.plot({
        width: 760,
        height: 60 + 24 * new Set(points.map((p) => p.row)).size,
        marginLeft: 80,
        x: { label: "time (s)" },
        y: { label: null },
        color: { legend: true },
        marks: [Plot.rectX(points, { x1: "time", x2: (d) => d.time + dt, y: "row", fill: "label", title: "label" })],
      }),
    );
    const base = file.name.replace(/\.[^.]*$/, "");
    download(box, videoCsv(file.name, result.rows), `${base}.csv`, "text/csv");
    download(box, JSON.stringify(result) + "\n", `${base}.json`, "application/json");
  } catch (e) {
    bar.remove();
    status.replaceWith(el("p", "error", e.message));
  }
}

// The webcam: a frame a few times per second, one request at a time.
let stream = null;
let timer = null;
const history = [];

async function toggleWebcam() {
  const button = document.getElementById("webcam");
  const live = document.getElementById("live");
  if (stream !== null) {
    clearInterval(timer);
    for (const t of stream.getTracks()) t.stop();
    stream = null;
    live.hidden = true;
    button.textContent = "Start webcam";
    return;
  }
  const status = document.getElementById("live-status");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (e) {
    live.hidden = false;
    status.textContent = `no camera: ${e.message}`;
    return;
  }
  const video = document.getElementById("camera");
  video.srcObject = stream;
  await video.play();
  live.hidden = false;
  button.textContent = "Stop webcam";
  const session = `cam-${Math.random().toString(36).slice(2, 10)}`;
  const grab = el("canvas");
  const overlay = document.getElementById("overlay");
  let busy = false;
  let frames = 0;
  history.length = 0;
  timer = setInterval(async () => {
    if (busy || video.videoWidth === 0) return;
    busy = true;
    try {
      grab.width = video.videoWidth;
      grab.height = video.videoHeight;
      grab.getContext("2d").drawImage(video, 0, 0);
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
      const result = await api(`/api/predict?session=${session}`, {
        method: "POST",
        body: formOf(new File([blob], `frame-${frames}.jpg`)),
      });
      frames++;
      overlay.width = video.clientWidth;
      overlay.height = video.clientHeight;
      const ctx = overlay.getContext("2d");
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      drawFaces(ctx, result.faces, overlay.width / video.videoWidth, (f) => `#${f.track} ${f.label_ema} ${pct(f.probs_ema[f.label_ema])}`);
      status.textContent = `${frames} frames sent; ${result.faces.length} face(s)`;
      const main = result.faces[0];
      if (main) {
        for (const [c, p] of Object.entries(main.probs_ema)) history.push({ frame: frames, class: c, p, track: main.track });
        while (history.length > 60 * Object.keys(main.probs_ema).length) history.shift();
        const chart = document.getElementById("live-chart");
        chart.replaceChildren(
          el("h4", "", `track #${main.track}: smoothed probabilities`),
          Plot.plot({
            width: 420,
            height: 240,
            y: { domain: [0, 1], label: "probability" },
            x: { label: "frame" },
            color: { legend: true },
            marks: [Plot.line(history, { x: "frame", y: "p", stroke: "class" })],
          }),
        );
      }
    } catch (e) {
      status.textContent = e.message;
    } finally {
      busy = false;
    }
  }, 300);
}
