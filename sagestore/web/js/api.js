// The API client: the token from sessionStorage as Bearer, every error as the server's JSON message.
const TOKEN_KEY = "sagestore.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  verifiedUser = null;  // a new token is not checked yet
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

export async function api(path, options = {}) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  return response.json();
}

// A listing page and the `after` token of the next one, from its Link rel="next" header (none: the last page).
async function page(path, options) {
  const response = await send(path, options);
  const next = /<([^>]*)>\s*;\s*rel="next"/.exec(response.headers.get("Link") || "");
  return { items: await response.json(), after: next ? new URL(next[1], location.href).searchParams.get("after") : null };
}

async function send(path, { method = "GET", json, headers = {}, query } = {}) {
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
  return response;
}

// Keys go into paths segment by segment: '/' stays a separator, everything else is escaped.
export function keyPath(key) { return key.split("/").map(encodeURIComponent).join("/"); }

export const buckets = {
  list: ({ after, limit } = {}) => page("/api/v1/objects", { query: { after, limit } }),
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

// Share links and short-lived download URLs.
export const shares = {
  create: (bucketId, key, method, expiresIn) =>
    api("/api/v1/shares", { method: "POST", json: { bucket_id: bucketId, key, method, expires_in: expiresIn } }),
  // the caller's links; with a bucket, every link on it the caller may see (its owner: everybody's)
  list: (bucketId) => api("/api/v1/shares", { query: { bucket_id: bucketId } }).then((body) => body.shares || []),
  revoke: (id) => api(`/api/v1/shares/${encodeURIComponent(id)}`, { method: "DELETE" }),
};

// Who a token says it is (its JWT claims, unchecked): only to name it, never to trust it.
export function claimedUser(value) {
  if (!value) return null;
  try {
    const payload = JSON.parse(atob(value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    const user = payload.sub || payload.preferred_username || payload.username;
    return typeof user === "string" && user ? user : null;
  } catch { return null; }
}

// Asks the server whether it accepts a token: null when it does, else the server's message.
export async function rejection(value) {
  const response = await fetch("/api/v1/objects?limit=1", { headers: { Authorization: `Bearer ${value}` } });
  if (response.status !== 401) return null;
  return (await errorOf(response)).message;
}

// The signed-in user: set only once the server accepted the token (never from the token alone).
let verifiedUser = null;
export function tokenUser() { return token() ? verifiedUser : null; }
export function setVerifiedUser(user) { verifiedUser = user; }
