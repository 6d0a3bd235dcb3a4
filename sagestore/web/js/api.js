// The API client: the token from sessionStorage as Bearer, every error as the server's JSON message.
const TOKEN_KEY = "sagestore.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const value = token();
  return value ? { ...extra, Authorization: `Bearer ${value}` } : { ...extra };
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The server's {"error": "..."} message, or the status line when the body is not ours.
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.clone().json();
    if (body && typeof body.error === "string") message = body.error;
  } catch { /* not JSON */ }
  return new ApiError(response.status, message);
}

export async function api(path, { method = "GET", json, headers = {}, query } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (Array.isArray(value)) value.forEach((item) => params.append(name, item));
      else if (value !== undefined && value !== null && value !== "") params.append(name, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const init = { method, headers: authHeaders(headers) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

// Keys go into paths segment by segment: '/' stays a separator, everything else is escaped.
export function keyPath(key) { return key.split("/").map(encodeURIComponent).join("/"); }

export const buckets = {
  list: () => api("/api/v1/objects"),
  get: (id) => api(`/api/v1/objects/${id}`),
  create: (name, type, isPublic) => api("/api/v1/objects", { method: "POST", query: { name, type, public: isPublic ? "true" : "" } }),
  rename: (id, name) => api(`/api/v1/objects/${id}`, { method: "PATCH", json: { name } }),
  remove: (id) => api(`/api/v1/objects/${id}`, { method: "DELETE" }),
  list_folder: (id, folder, { prefix, token: continuation, limit } = {}) =>
    api(`/api/v1/objects/${id}/${keyPath(folder)}`, { query: { prefix, ContinuationToken: continuation, limit } }),
  removeFile: (id, key) => api(`/api/v1/objects/${id}/${keyPath(key)}`, { method: "DELETE" }),
  grants: (id) => api(`/api/v1/objects/${id}`, { query: { permissions: "true" } }),
  grant: (id, granteeType, grantee, permission) =>
    api(`/api/v1/objects/${id}`, { method: "PUT", query: { permissions: "true" }, json: { granteeType, grantee, permission } }),
  revoke: (id, spec) => api(`/api/v1/objects/${id}`, { method: "DELETE", query: { permissions: "true", grantee: spec } }),
};

// Share links and short-lived download URLs (the shares API of issue 12).
export const shares = {
  create: (bucketId, key, method, expiresIn) =>
    api("/api/v1/shares", { method: "POST", json: { bucket_id: bucketId, key, method, expires_in: expiresIn } }),
};

// Who the token says we are; the server checks it, this only labels the page.
export function tokenUser() {
  const value = token();
  if (!value) return null;
  try {
    const payload = JSON.parse(atob(value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.sub || payload.user || payload.username || "signed in";
  } catch { return "signed in"; }
}
