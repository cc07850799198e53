// Requests to the API: the stored key as a Bearer token, one prompt for a key on a 401, errors as sentences.

const KEY = "deepsynthbody.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function storedKey() {
  return localStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
  document.getElementById("key-button").hidden = !key;
}

let asking = null; // one dialog for every request that met a 401 at the same time

export function askForKey(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const title = document.getElementById("key-title");
  title.textContent = reason || "API key";
  input.value = storedKey();
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      asking = null;
      if (dialog.returnValue === "save" && input.value.trim()) {
        setKey(input.value.trim());
        resolve(true);
      } else {
        if (dialog.returnValue === "forget") setKey("");
        resolve(false);
      }
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

export function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The sentence an error body carries (`message`), else one made from the status. */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  let message = body && typeof body.message === "string" ? body.message : `the service answered ${response.status} ${response.statusText}`;
  if (body && typeof body.hint === "string" && !message.includes(body.hint)) message += ` (${body.hint})`;
  return new ApiError(response.status, message, body);
}

/** fetch() with the key; on a 401 asks for a key once and tries again. Resolves to the Response when it is ok. */
export async function request(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(options.headers || {}), ...authHeaders() };
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "the service cannot be reached; check that it is running and try again", null);
    }
    if (response.ok) return response;
    if (response.status === 401 && attempt < 3) {
      const error = await errorOf(response);
      const wasKey = storedKey();
      if (await askForKey(wasKey ? "That key was refused: enter another" : "This service needs an API key")) continue;
      throw error;
    }
    throw await errorOf(response);
  }
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

export async function postJSON(path, body) {
  return getJSON(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}
