// Resumable uploads over tus 1.0 (/api/v1/tus/), chunks of a file in parallel by tus concatenation.
//
// A file of at least 2 chunks is split into up to LANES byte ranges; each range is a tus partial
// upload (Upload-Concat: partial) sent chunk by chunk, all ranges at once; a final upload
// (Upload-Concat: final;...) names the bucket and key and is assembled server-side. Smaller files
// are one plain tus upload. The upload URLs are kept in localStorage under the file's bucket, key,
// name, size and lastModified, so picking the same file again after a lost connection or a reload
// asks each URL for its offset (HEAD) and sends only the missing bytes. Bodies are File.slice()s:
// the browser streams them from disk, the page never holds a whole file.
import { authHeaders, errorOf, ApiError } from "./api.js";

const TUS = "/api/v1/tus/";
const LANES = 4;
const RETRY_DELAYS = [500, 1000, 2000, 4000, 8000, 16000];  // then the file shows "failed", with Retry
const STORE_PREFIX = "sagestore.upload.";

// 8 MiB by default (at least S3's 5 MiB part, so concatenation copies parts server-side);
// sessionStorage "sagestore.chunkSize" overrides it, e.g. for a slow link.
function chunkSize() {
  const chosen = Number(sessionStorage.getItem("sagestore.chunkSize"));
  return Number.isFinite(chosen) && chosen >= 5 * 2 ** 20 ? chosen : 8 * 2 ** 20;
}

const b64 = (text) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));
const tusHeaders = (extra = {}) => authHeaders({ "Tus-Resumable": "1.0.0", ...extra });
const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("aborted", "AbortError")); }, { once: true });
});

export function fingerprint(bucketId, key, file) {
  return STORE_PREFIX + JSON.stringify([bucketId, key, file.name, file.size, file.lastModified]);
}

// Uploads this browser left unfinished (for the "pick it again to resume" hint).
export function unfinished() {
  const found = [];
  for (let index = 0; index < localStorage.length; index++) {
    const name = localStorage.key(index);
    if (!name.startsWith(STORE_PREFIX)) continue;
    try {
      const [bucketId, key, fileName, size] = JSON.parse(name.slice(STORE_PREFIX.length));
      found.push({ bucketId, key, fileName, size });
    } catch { localStorage.removeItem(name); }
  }
  return found;
}

class Retryable extends Error {}

// One tus request; network errors, 5xx, 409 (offset moved), 423 (locked) are worth retrying.
async function tusFetch(url, init, signal) {
  let response;
  try {
    response = await fetch(url, { ...init, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Retryable(`network error: ${error.message}`);
  }
  if (response.ok) return response;
  const problem = await errorOf(response);
  if (response.status >= 500 || response.status === 409 || response.status === 423) throw new Retryable(problem.message);
  throw problem;
}

// PATCH with upload progress (fetch has none): resolves with the new offset.
function patch(url, offset, body, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PATCH", url);
    for (const [name, value] of Object.entries(tusHeaders({ "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" }))) {
      xhr.setRequestHeader(name, value);
    }
    const abort = () => xhr.abort();
    signal.addEventListener("abort", abort, { once: true });
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      signal.removeEventListener("abort", abort);
      if (xhr.status === 204) { resolve(Number(xhr.getResponseHeader("Upload-Offset"))); return; }
      let message = `${xhr.status} ${xhr.statusText}`;
      try { message = JSON.parse(xhr.responseText).error || message; } catch { /* not JSON */ }
      if (xhr.status >= 500 || xhr.status === 409 || xhr.status === 423) reject(new Retryable(message));
      else reject(new ApiError(xhr.status, message));
    };
    xhr.onerror = () => { signal.removeEventListener("abort", abort); reject(new Retryable("network error")); };
    xhr.onabort = () => { signal.removeEventListener("abort", abort); reject(new DOMException("aborted", "AbortError")); };
    xhr.send(body);
  });
}

async function offsetOf(url, signal) {
  const response = await tusFetch(url, { method: "HEAD", headers: tusHeaders(), cache: "no-store" }, signal);
  return Number(response.headers.get("Upload-Offset"));
}

async function createUpload(headers, signal) {
  const response = await tusFetch(TUS, { method: "POST", headers: tusHeaders(headers) }, signal);
  return new URL(response.headers.get("Location"), location.href).pathname;
}

// Runs fn, retrying Retryable failures with backoff (and waiting while the browser is offline).
async function withRetries(fn, signal, onRetry) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (!(error instanceof Retryable) || attempt >= RETRY_DELAYS.length) throw error;
      onRetry(error.message);
      if (!navigator.onLine) {
        await new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
      }
      await sleep(RETRY_DELAYS[attempt], signal);
    }
  }
}

export class Upload {
  constructor(file, bucketId, key, onChange) {
    Object.assign(this, { file, bucketId, key, onChange });
    this.state = "queued";   // queued | uploading | paused | done | failed | cancelled
    this.message = "";
    this.received = [];      // per lane: bytes the server has confirmed
    this.sending = [];       // per lane: bytes of the PATCH in flight
    this.samples = [];       // [time, bytes] for speed
    this.controller = null;
    this.storeKey = fingerprint(bucketId, key, file);
  }

  get sent() { return this.file.size === 0 && this.state === "done" ? 0 : this.received.reduce((a, b) => a + b, 0) + this.sending.reduce((a, b) => a + b, 0); }

  get speed() {  // bytes per second over the last ~5 s
    const now = performance.now();
    this.samples = this.samples.filter(([time]) => now - time < 5000);
    if (this.samples.length < 2) return 0;
    const [firstTime, firstBytes] = this.samples[0];
    const [lastTime, lastBytes] = this.samples[this.samples.length - 1];
    return lastTime > firstTime ? (lastBytes - firstBytes) * 1000 / (lastTime - firstTime) : 0;
  }

  changed() {
    this.samples.push([performance.now(), this.sent]);
    this.onChange(this);
  }

  lanes() {  // [start, end) byte ranges, aligned to the chunk size
    const chunk = chunkSize();
    const chunks = Math.ceil(this.file.size / chunk);
    if (chunks < 2) return [[0, this.file.size]];
    const lanes = Math.min(LANES, chunks);
    const perLane = Math.ceil(chunks / lanes) * chunk;
    const ranges = [];
    for (let start = 0; start < this.file.size; start += perLane) ranges.push([start, Math.min(this.file.size, start + perLane)]);
    return ranges;
  }

  record() {
    try { return JSON.parse(localStorage.getItem(this.storeKey)); } catch { return null; }
  }

  async start() {
    if (!["queued", "paused", "failed"].includes(this.state)) return;
    this.state = "uploading";
    this.message = "";
    this.controller = new AbortController();
    const signal = this.controller.signal;
    this.changed();
    try {
      await this.run(signal);
      localStorage.removeItem(this.storeKey);
      this.state = "done";
      this.sending = this.sending.map(() => 0);
    } catch (error) {
      if (error.name === "AbortError") return;  // paused or cancelled: that code set the state
      this.state = "failed";
      this.message = error.message;
    } finally {
      this.changed();
    }
  }

  metadata() {
    return [["bucket", this.bucketId], ["key", this.key], ["filename", this.file.name], ["filetype", this.file.type]]
      .filter(([, value]) => value).map(([name, value]) => `${name} ${b64(value)}`).join(",");
  }

  async run(signal) {
    const ranges = this.lanes();
    let record = this.record();
    if (record && (record.ranges?.length !== ranges.length || record.urls?.length !== ranges.length)) record = null;
    if (record) this.message = "resuming";
    const single = ranges.length === 1;
    if (!record) {
      const urls = [];
      for (const [start, end] of ranges) {
        const headers = single
          ? { "Upload-Length": String(end - start), "Upload-Metadata": this.metadata() }
          : { "Upload-Length": String(end - start), "Upload-Concat": "partial" };
        urls.push(await withRetries(() => createUpload(headers, signal), signal, (m) => this.retrying(m)));
      }
      record = { ranges, urls };
      localStorage.setItem(this.storeKey, JSON.stringify(record));
    }
    this.received = ranges.map(() => 0);
    this.sending = ranges.map(() => 0);
    try {
      await Promise.all(ranges.map((range, lane) => this.sendLane(lane, range, record.urls[lane], signal)));
    } catch (error) {
      this.controller.abort();  // one lane failed for good: stop the others
      throw error;
    }
    if (!single) {
      const concat = "final;" + record.urls.join(" ");
      await withRetries(() => createUpload({ "Upload-Concat": concat, "Upload-Metadata": this.metadata() }, signal),
        signal, (m) => this.retrying(m));
    }
  }

  retrying(message) {
    this.message = `retrying: ${message}`;
    this.changed();
  }

  async sendLane(lane, [start, end], url, signal) {
    const chunk = chunkSize();
    const length = end - start;
    let offset = null;  // unknown until the server says
    await withRetries(async (attempt) => {
      if (offset === null || attempt > 0) {
        try {
          offset = await offsetOf(url, signal);
        } catch (error) {
          if (error instanceof ApiError && (error.status === 404 || error.status === 410)) {
            localStorage.removeItem(this.storeKey);  // expired or gone: the next try starts afresh
          }
          throw error;
        }
      }
      this.received[lane] = offset;
      this.changed();
      while (offset < length) {
        const body = this.file.slice(start + offset, start + Math.min(length, offset + chunk));
        offset = await patch(url, offset, body, (loaded) => { this.sending[lane] = loaded; this.changed(); }, signal);
        this.sending[lane] = 0;
        this.received[lane] = offset;
        this.message = "";
        this.changed();
      }
    }, signal, (m) => this.retrying(m));
  }

  pause() {
    if (this.state !== "uploading" && this.state !== "queued") return;
    this.state = "paused";
    this.controller?.abort();
    this.sending = this.sending.map(() => 0);
    this.changed();
    this.refreshOffsets();
  }

  // What the server kept of the aborted chunks (it keeps every byte it received): shown while paused.
  async refreshOffsets() {
    const record = this.record();
    if (!record) return;
    const offsets = await Promise.all(record.urls.map((url) => offsetOf(url).catch(() => null)));
    if (this.state !== "paused") return;
    offsets.forEach((offset, lane) => { if (offset !== null && Number.isFinite(offset)) this.received[lane] = offset; });
    this.changed();
  }

  async cancel() {
    const wasActive = ["uploading", "paused", "failed"].includes(this.state);
    this.state = "cancelled";
    this.controller?.abort();
    this.sending = this.sending.map(() => 0);
    this.changed();
    const record = this.record();
    localStorage.removeItem(this.storeKey);
    if (record && wasActive) {  // free the server's parts (tus termination)
      await Promise.all(record.urls.map((url) => fetch(url, { method: "DELETE", headers: tusHeaders() }).catch(() => null)));
    }
  }
}

// The queue: at most FILES_AT_ONCE files upload at the same time, the rest wait their turn.
const FILES_AT_ONCE = 2;

export class Queue {
  constructor(onChange) {
    this.items = [];
    this.onChange = onChange;
  }

  add(file, bucketId, key) {
    const existing = this.items.find((item) => item.storeKey === fingerprint(bucketId, key, file) && item.state !== "done" && item.state !== "cancelled");
    if (existing) {  // picked again: a paused or failed upload continues from the server's offsets
      if (existing.state !== "uploading") { existing.file = file; this.resume(existing); }
      return existing;
    }
    const upload = new Upload(file, bucketId, key, (item) => { this.onChange(item); if (item.state !== "uploading") this.pump(); });
    this.items.push(upload);
    this.onChange(upload);
    this.pump();
    return upload;
  }

  pump() {
    const active = this.items.filter((item) => item.state === "uploading").length;
    const waiting = this.items.filter((item) => item.state === "queued");
    for (const item of waiting.slice(0, Math.max(0, FILES_AT_ONCE - active))) item.start();
  }

  resume(item) { item.state = item.state === "uploading" ? item.state : "queued"; this.onChange(item); this.pump(); }

  get totals() {
    const counted = this.items.filter((item) => item.state !== "cancelled");
    return { sent: counted.reduce((sum, item) => sum + (item.state === "done" ? item.file.size : item.sent), 0),
             size: counted.reduce((sum, item) => sum + item.file.size, 0),
             speed: counted.reduce((sum, item) => sum + (item.state === "uploading" ? item.speed : 0), 0) };
  }
}

// Files of a drop: plain files, and whole folders through the entries API (keys keep their paths).
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  const found = [];
  async function walk(entry, path) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push({ file, path: path + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {  // readEntries answers in batches until an empty one
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}${entry.name}/`);
      }
    }
  }
  for (const entry of entries) await walk(entry, "");
  return found;
}
