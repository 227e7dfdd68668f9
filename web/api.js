// Calls to ferkit serve's JSON API, with the page's ?token= (if any) on every request.
const token = new URLSearchParams(location.search).get("token");

/** The query string that carries the token, for URLs the browser opens itself (EventSource). */
export function tokenQuery(prefix = "?") {
  return token ? `${prefix}token=${encodeURIComponent(token)}` : "";
}

/** GET or POST a JSON API path; throws an Error with the server's message on an error status. */
export async function api(path, options = {}) {
  const headers = { ...(options.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

/** POST a file to /api/predict with upload progress (XMLHttpRequest: fetch has none). */
export function uploadWithProgress(file, query, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/predict${query}`);
    if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { error: `HTTP ${xhr.status}` };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body.error ?? `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** An element with a class and text. */
export function el(tag, className = "", text = "") {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}

/** A percentage with one decimal, or "-" for null. */
export function pct(x) {
  return x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)} %`;
}
