// ferkit serve's web app: a hash router over the predict, runs and run views.
import { api } from "./api.js";
import { showPredict } from "./predict.js";
import { showRun, showRuns, stopRun } from "./runs.js";

const views = ["predict", "runs", "run"];

function route() {
  const [, view = "predict", id] = location.hash.split("/");
  const name = view === "runs" && id ? "run" : views.includes(view) ? view : "predict";
  for (const v of views) document.getElementById(`view-${v}`).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === (name === "run" ? "runs" : name));
  if (name !== "run") stopRun();
  if (name === "predict") showPredict();
  else if (name === "runs") showRuns();
  else showRun(decodeURIComponent(id));
}

window.addEventListener("hashchange", route);
route();
api("/api/health")
  .then((h) => {
    document.getElementById("status").textContent = `ferkit ${h.version} · model ${h.model.file.split("/").pop()}`;
  })
  .catch((e) => {
    document.getElementById("status").textContent = e.message;
  });
