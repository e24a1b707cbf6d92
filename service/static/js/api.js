// The HistoSynth REST API as the page uses it. The API key lives in sessionStorage only
// (gone when the browser session ends) and travels as the X-API-Key header.

const KEY_NAME = "histosynth.apiKey";

/** An error answered by the API: its status, stable code and its own message. */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

async function toError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error && error.message) {
    return new ApiError(response.status, error.code, error.message, error.details);
  }
  return new ApiError(response.status, "http_error",
    `HTTP ${response.status} ${response.statusText}`.trim());
}

async function request(method, path, { query, json, form } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  let response;
  try {
    response = await fetch(url, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, "network_error", `the server did not answer: ${err.message}`);
  }
  if (!response.ok) throw await toError(response);
  return response;
}

/** Multipart form from an object; Blob values become files named after `filenames`. */
export function formData(fields, filenames = {}) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === "") continue;
    if (value instanceof Blob) form.append(name, value, filenames[name] || `${name}.png`);
    else form.append(name, String(value));
  }
  return form;
}

export const api = {
  getJson: async (path, query) => (await request("GET", path, { query })).json(),
  postJson: async (path, json) => (await request("POST", path, { json })).json(),
  postForm: (path, fields, filenames) =>
    request("POST", path, { form: formData(fields, filenames) }),
  delete: async (path) => (await request("DELETE", path)).json(),
  blob: async (path, query) => (await request("GET", path, { query })).blob(),
};
