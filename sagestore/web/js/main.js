// The console: hash routes (#/, #/b/<bucket>/<folder/>, #/p/<bucket>), rendered with plain DOM.
import { ApiError, buckets, claimedUser, keyPath, rejection, setToken, setVerifiedUser, shares, token, tokenUser } from "./api.js";
import { formatBytes, formatDate, formatDuration, h } from "./dom.js";
import { Queue, droppedFiles, unfinished } from "./uploads.js";

const BUCKET_TYPES = ["model", "training-data", "profile", "none"];
const PERMISSIONS = ["READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"];
const EXPIRIES = [["15 minutes", 900], ["1 hour", 3600], ["6 hours", 21600], ["1 day", 86400], ["3 days", 259200], ["7 days", 604800]];
const DOWNLOAD_LINK_SECONDS = 300;
const mainElement = document.getElementById("main");
// the page's content; absent parts (null) are left out
const main = { replaceChildren: (...parts) => mainElement.replaceChildren(...parts.filter(Boolean)) };
const status = document.getElementById("status");
const errorBox = document.getElementById("error");

function showError(error) {
  errorBox.textContent = error instanceof Error ? error.message : String(error);
  errorBox.hidden = false;
}
function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }
function say(text) { status.textContent = text; }

// Runs an action from a control; its failure shows the server's message.
async function attempt(action) {
  clearError();
  try { return await action(); } catch (error) { showError(error); return undefined; }
}

// ------------------------------------------------------------------------------------ sign-in
// The header says "Signed in as" only once the server accepted the token. A #token= link never
// replaces a signed-in user without asking, and says whom it signs in (anyone can send a link:
// signing the victim into the sender's account silently would be login CSRF).
let offeredToken = null;  // a #token= link waiting for the signed-in user's answer

function takeTokenFromFragment() {
  // #token=<jwt>: the fragment never reaches a server; drop it from the address bar and history
  const match = location.hash.match(/^#token=([^&]+)/);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + "#/");
  try { return decodeURIComponent(match[1]); } catch { return match[1]; }
}

// Signs in with a token once the server accepts it; returns the server's refusal, or null.
async function signIn(value) {
  const problem = await rejection(value);
  if (problem) return problem;
  setToken(value);
  setVerifiedUser(claimedUser(value) || "signed in");
  return null;
}

async function settleSignIn() {
  const offered = takeTokenFromFragment();
  if (token() && !tokenUser()) {  // a token kept from before this page load: check it again
    const problem = await rejection(token());
    if (problem) {
      setToken(null);
      if (!offered) showError(`You are signed out: ${problem}`);
    } else {
      setVerifiedUser(claimedUser(token()) || "signed in");
    }
  }
  if (!offered || offered === token()) return;
  if (tokenUser()) { offeredToken = offered; return; }  // someone is signed in: ask first
  const problem = await signIn(offered);
  if (problem) showError(problem);
}

function signOut() {
  setToken(null);
  renderWho();
  route();
}

function renderWho() {
  const who = document.getElementById("who");
  const user = tokenUser();
  who.replaceChildren(user
    ? h("span", {}, "Signed in as ", h("strong", {}, user), " ",
        h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"))
    : h("a", { href: "#/sign-in" }, "Sign in"));
}

function switchUserCard() {
  const current = tokenUser();
  const offeredUser = claimedUser(offeredToken);
  const decide = async (switching) => {
    const offered = offeredToken;
    offeredToken = null;
    clearError();
    if (switching) {
      const problem = await signIn(offered);
      if (problem) showError(`The link was refused, you are still signed in as ${current}: ${problem}`);
      else say(`Signed in as ${tokenUser()}`);
    } else {
      say(`Still signed in as ${current}`);
    }
    route();
  };
  return h("section", { class: "card narrow", id: "switch-user", role: "alertdialog", "aria-labelledby": "switch-title", "aria-describedby": "switch-text" },
    h("h1", { id: "switch-title" }, "Switch user?"),
    h("p", { id: "switch-text" }, "This sign-in link is for ", h("strong", {}, offeredUser || "a user it does not name"),
      ". You are signed in as ", h("strong", {}, current), "."),
    h("p", { class: "muted" }, "Switch only if you asked for this link: a link from someone else would have you work in their account."),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => decide(true) }, offeredUser ? `Sign in as ${offeredUser}` : "Switch user"),
      h("button", { type: "button", class: "secondary", onclick: () => decide(false) }, `Stay signed in as ${current}`)));
}

function signInCard() {
  const card = document.getElementById("sign-in").content.cloneNode(true);
  card.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = event.target.token.value.trim().replace(/^(Bearer|sage)\s+/i, "");
    if (!value) return;
    attempt(async () => {
      const problem = await signIn(value);
      if (problem) throw new Error(problem);
      renderWho();
      location.hash = "#/";
      route();
    });
  });
  return card;
}

// ------------------------------------------------------------------------------------ buckets page
// 1000, the API's most for a signed-out caller: few users see more than one page
const BUCKET_PAGE_SIZE = () => Number(sessionStorage.getItem("sagestore.bucketPageSize")) || 1000;

async function bucketsPage(params) {
  const me = tokenUser();
  const after = params.get("after") || "";
  const { items: list, after: nextPage } = await buckets.list({ after, limit: BUCKET_PAGE_SIZE() });
  const rows = list.map((bucket) => {
    const relation = me && bucket.owner === me ? "yours" : (me ? "shared with you or public" : "public");
    return h("tr", {},
      h("td", {}, h("a", { href: `#/b/${bucket.id}/` }, bucket.name || "(unnamed)")),
      h("td", { "data-label": "Type" }, bucket.type), h("td", { "data-label": "Owner" }, bucket.owner),
      h("td", { "data-label": "Access" }, relation),
      me ? h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "aria-label": `Rename ${bucket.name}`, onclick: () => renameForm(bucket) }, "Rename"),
        h("a", { class: "button secondary", href: `#/p/${bucket.id}`, "aria-label": `Permissions of ${bucket.name}` }, "Permissions"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete bucket ${bucket.name}`, onclick: () => deleteBucket(bucket) }, "Delete"))) : null);
  });
  // signed out there is nothing to act on: no Actions column at all
  const columns = ["Name", "Type", "Owner", "Access", ...(me ? ["Actions"] : [])];
  const table = rows.length
    ? h("div", { class: "scroll" }, h("table", { id: "buckets" }, h("caption", { class: "visually-hidden" }, "Buckets"),
        h("thead", {}, h("tr", {}, columns.map((name) => h("th", { scope: "col" }, name)))),
        h("tbody", {}, rows)))
    : h("p", { class: "muted" }, me ? "No buckets yet: create one." : "No public buckets.");
  const paging = h("div", { class: "actions paging" },
    after ? h("a", { class: "button secondary", href: "#/" }, "First page") : null,
    nextPage ? h("a", { class: "button secondary", href: `#/?${new URLSearchParams({ after: nextPage })}` }, "Next page") : null);
  main.replaceChildren(
    me ? null : signInCard(),
    h("section", { class: "card" }, h("h1", {}, me ? "Buckets" : "Public buckets"), table, paging,
      h("div", { id: "rename-slot" })),
    me ? createBucketForm() : null);
}

function createBucketForm() {
  return h("section", { class: "card" }, h("h2", {}, "Create a bucket"),
    h("form", { class: "inline-form", onsubmit: (event) => {
      event.preventDefault();
      const form = event.target;
      attempt(async () => {
        const bucket = await buckets.create(form.name.value, form.type.value, form.public.checked);
        say(`Bucket ${bucket.name} created`);
        location.hash = `#/b/${bucket.id}/`;
      });
    } },
    h("label", { for: "new-name" }, "Bucket name"), h("input", { id: "new-name", name: "name", required: true, maxlength: 256 }),
    h("label", { for: "new-type" }, "Bucket type"),
    h("select", { id: "new-type", name: "type" }, BUCKET_TYPES.map((type) => h("option", { value: type }, type))),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "public" }), " Public (anyone can read)"),
    h("button", { type: "submit" }, "Create bucket")));
}

function renameForm(bucket) {
  const slot = document.getElementById("rename-slot");
  const input = h("input", { id: "rename-input", value: bucket.name, required: true, maxlength: 256 });
  slot.replaceChildren(h("form", { class: "inline-form", onsubmit: (event) => {
    event.preventDefault();
    attempt(async () => { await buckets.rename(bucket.id, input.value); say("Renamed"); await route(); });
  } }, h("label", { for: "rename-input" }, `New name for ${bucket.name}`), input,
    h("button", { type: "submit" }, "Save name"),
    h("button", { type: "button", class: "secondary", onclick: () => slot.replaceChildren() }, "Cancel rename")));
  input.focus();
}

function deleteBucket(bucket) {
  if (!confirm(`Delete bucket "${bucket.name}" with all its files? This cannot be undone.`)) return;
  attempt(async () => { await buckets.remove(bucket.id); say(`Bucket ${bucket.name} deleted`); await route(); });
}

// ------------------------------------------------------------------------------------ one bucket
const PAGE_SIZE = () => Number(sessionStorage.getItem("sagestore.pageSize")) || 100;

async function bucketPage(bucketId, folder, params) {
  const bucket = await buckets.get(bucketId);
  const prefix = params.get("prefix") || "";
  const pageToken = params.get("page") || "";
  const listing = await buckets.list_folder(bucketId, folder, { prefix, token: pageToken, limit: PAGE_SIZE() });
  const signedIn = Boolean(token());
  const crumbs = [h("li", {}, h("a", { href: `#/b/${bucketId}/` }, bucket.name || bucketId))];
  let path = "";
  for (const segment of folder.split("/").filter(Boolean)) {
    path += `${segment}/`;
    crumbs.push(h("li", {}, h("a", { href: `#/b/${bucketId}/${keyPath(path)}` }, segment)));
  }
  crumbs[crumbs.length - 1].firstChild.setAttribute("aria-current", "page");

  const rows = [];
  for (const common of listing.CommonPrefixes || []) {
    const name = common.Prefix;
    rows.push(h("tr", {}, h("td", {}, h("a", { href: `#/b/${bucketId}/${keyPath(folder + name)}`, class: "folder" }, name)),
      h("td", { "data-label": "Size" }, "folder"), h("td", { class: "empty" }), h("td", { class: "empty" })));
  }
  for (const item of listing.Contents || []) {
    const key = folder + item.Key;
    rows.push(h("tr", {},
      h("td", { class: "name" }, item.Key), h("td", { "data-label": "Size" }, formatBytes(item.Size)),
      h("td", { "data-label": "Modified" }, formatDate(item.LastModified)),
      h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "aria-label": `Download ${item.Key}`, onclick: () => download(bucketId, key) }, "Download"),
        signedIn ? h("button", { type: "button", class: "secondary", "aria-label": `Share ${item.Key}`, onclick: () => shareForm(bucketId, key) }, "Share") : null,
        signedIn ? h("button", { type: "button", class: "danger", "aria-label": `Delete ${item.Key}`, onclick: () => deleteFile(bucketId, key) }, "Delete") : null))));
  }
  const here = `#/b/${bucketId}/${keyPath(folder)}`;
  const filter = h("form", { class: "inline-form", role: "search", onsubmit: (event) => {
    event.preventDefault();
    const value = event.target.prefix.value;
    location.hash = value ? `${here}?prefix=${encodeURIComponent(value)}` : here;
  } }, h("label", { for: "prefix-filter" }, "Filter by name prefix"),
    h("input", { id: "prefix-filter", name: "prefix", value: prefix, type: "search" }),
    h("button", { type: "submit", class: "secondary" }, "Filter"));
  const paging = h("div", { class: "actions paging" },
    pageToken ? h("a", { class: "button secondary", href: prefix ? `${here}?prefix=${encodeURIComponent(prefix)}` : here }, "First page") : null,
    listing.NextContinuationToken ? h("a", { class: "button secondary", href: `${here}?${new URLSearchParams({ ...(prefix ? { prefix } : {}), page: listing.NextContinuationToken })}` }, "Next page") : null);

  const resumable = unfinished().filter((entry) => entry.bucketId === bucketId);
  main.replaceChildren(
    h("section", { class: "card drop-zone", id: "drop-zone", "aria-labelledby": "bucket-title" },
      h("nav", { "aria-label": "Breadcrumb" }, h("ol", { class: "breadcrumbs" }, crumbs)),
      h("h1", { id: "bucket-title" }, bucket.name || bucketId, h("span", { class: "muted small" }, ` ${bucket.type}, owner ${bucket.owner}`)),
      bucketIdLine(bucketId),
      signedIn ? uploadControls(bucketId, folder) : null,
      resumable.length ? h("div", { class: "notice" }, h("p", {}, "Unfinished uploads: pick the same file again to resume where it stopped."),
        h("ul", {}, resumable.map((entry) => h("li", {}, `${entry.key} (${formatBytes(entry.size)})`)))) : null,
      filter,
      rows.length
        ? h("div", { class: "scroll" }, h("table", { id: "files" }, h("caption", { class: "visually-hidden" }, `Files in ${folder || "the bucket root"}`),
            h("thead", {}, h("tr", {}, ["Name", "Size", "Modified", "Actions"].map((name) => h("th", { scope: "col" }, name)))),
            h("tbody", {}, rows)))
        : h("p", { class: "muted" }, prefix ? `Nothing here starts with "${prefix}".` : "This folder is empty."),
      paging,
      h("div", { id: "share-slot" })),
    signedIn ? h("p", {}, h("a", { href: `#/p/${bucketId}` }, "Permissions of this bucket")) : null);
  if (signedIn) wireDrop(bucketId, folder);
}

function uploadControls(bucketId, folder) {
  const pick = (event) => {
    const files = [...event.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    enqueue(bucketId, folder, files);
    event.target.value = "";
  };
  return h("div", { class: "upload-controls" },
    h("p", { class: "muted" }, "Drop files or folders anywhere on this card, or pick them:"),
    h("label", { for: "file-input", class: "button" }, "Upload files"),
    h("input", { id: "file-input", type: "file", multiple: true, class: "file-input", onchange: pick }),
    h("label", { for: "folder-input", class: "button" }, "Upload a folder"),
    h("input", { id: "folder-input", type: "file", multiple: true, webkitdirectory: true, class: "file-input", onchange: pick }));
}

function wireDrop(bucketId, folder) {
  const zone = document.getElementById("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    enqueue(bucketId, folder, await droppedFiles(event.dataTransfer));
  });
}

function deleteFile(bucketId, key) {
  if (!confirm(`Delete ${key}?`)) return;
  attempt(async () => { await buckets.removeFile(bucketId, key); say(`${key} deleted`); await route(); });
}

// The browser's own download: a short-lived signed URL when signed in, the plain URL for public buckets.
function download(bucketId, key) {
  attempt(async () => {
    const url = token()
      ? (await shares.create(bucketId, key, "GET", DOWNLOAD_LINK_SECONDS)).url
      : `/api/v1/objects/${bucketId}/${keyPath(key)}`;
    const anchor = h("a", { href: url, download: key.split("/").pop(), hidden: true });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
  });
}

// The bucket's id, which the CLI and the API need (sage://<id>/...), with a copy button.
function bucketIdLine(bucketId) {
  const value = h("code", { id: "bucket-id" }, bucketId);
  return h("p", { class: "bucket-id" }, h("span", { class: "muted" }, "Bucket ID "), value, " ",
    h("button", { type: "button", class: "secondary small-button", "aria-label": "Copy bucket ID", onclick: () => copyText(bucketId, "Bucket ID copied") }, "Copy ID"));
}

function shareState(share) {
  if (share.revoked) return "revoked";
  return new Date(share.expires_at) <= new Date() ? "expired" : "active";
}

// A table of share links, each active one with its Revoke button; `reload` redraws after a revoke.
function shareTable(list, reload, { showKey }) {
  const rows = list.map((share) => {
    const state = shareState(share);
    return h("tr", {},
      showKey ? h("td", { class: "name" }, share.key) : null,
      h("td", { "data-label": "Kind" }, share.method === "PUT" ? "upload (PUT)" : "download (GET)"),
      h("td", { "data-label": "Made by" }, share.created_by),
      h("td", { "data-label": "Expires" }, formatDate(share.expires_at)),
      h("td", { "data-label": "State" }, state),
      h("td", {}, state === "active"
        ? h("button", { type: "button", class: "danger", "aria-label": `Revoke the link to ${share.key} made by ${share.created_by}, expiring ${formatDate(share.expires_at)}`,
            onclick: () => attempt(async () => { await shares.revoke(share.id); say(`Link to ${share.key} revoked`); await reload(); }) }, "Revoke")
        : h("span", { class: "muted" }, "—")));
  });
  const columns = [...(showKey ? ["File"] : []), "Kind", "Made by", "Expires", "State", "Actions"];
  return h("div", { class: "scroll" }, h("table", { class: "shares" }, h("caption", { class: "visually-hidden" }, "Share links"),
    h("thead", {}, h("tr", {}, columns.map((name) => h("th", { scope: "col" }, name)))), h("tbody", {}, rows)));
}

function shareForm(bucketId, key) {
  const slot = document.getElementById("share-slot");
  const existing = h("div", { id: "share-list" });
  // the link box and its Copy button exist only once there is a link
  const result = h("div", { id: "share-result" });
  const showLinks = async () => {
    const list = (await shares.list(bucketId)).filter((share) => share.key === key && shareState(share) === "active");
    existing.replaceChildren(list.length
      ? h("div", {}, h("h3", {}, `Active links to ${key}`), shareTable(list, showLinks, { showKey: false }))
      : h("p", { class: "muted" }, "No active share link to this file."));
  };
  slot.replaceChildren(h("section", { class: "share", "aria-label": `Share ${key}` },
    h("h2", {}, `Share ${key}`),
    h("form", { class: "inline-form", onsubmit: (event) => {
      event.preventDefault();
      attempt(async () => {
        const share = await shares.create(bucketId, key, "GET", Number(event.target.expiry.value));
        const output = h("input", { id: "share-url", readOnly: true, value: share.url, "aria-label": `Share link for ${key}` });
        result.replaceChildren(h("div", { class: "inline-form" }, output,
          h("button", { type: "button", onclick: () => copyText(output.value, "Link copied", output) }, "Copy link")));
        say(`Share link valid until ${formatDate(share.expires_at)}`);
        output.select();
        await showLinks();
      });
    } }, h("label", { for: "share-expiry" }, "Link expires after"),
      h("select", { id: "share-expiry", name: "expiry" }, EXPIRIES.map(([label, seconds]) => h("option", { value: seconds, selected: seconds === 86400 }, label))),
      h("button", { type: "submit" }, "Create share link")),
    result, existing));
  slot.querySelector("select").focus();
  attempt(showLinks);
}

async function copyText(text, done, input) {
  if (input) input.select();
  try { await navigator.clipboard.writeText(text); say(done); } catch { say("Select the text and copy it (Ctrl+C)"); }
}

// ------------------------------------------------------------------------------------ permissions
async function permissionsPage(bucketId) {
  const bucket = await buckets.get(bucketId);
  const grants = await buckets.grants(bucketId);
  const isPublic = grants.some((grant) => grant.granteeType === "GROUP" && grant.grantee === "AllUsers");
  const reload = () => permissionsPage(bucketId);
  const rows = grants.map((grant) => {
    const spec = `${grant.granteeType}:${grant.grantee}:${grant.permission}`;
    return h("tr", {}, h("td", { "data-label": "Type" }, grant.granteeType), h("td", { "data-label": "Grantee" }, grant.grantee),
      h("td", { "data-label": "Permission" }, grant.permission),
      h("td", {}, grant.granteeType === "USER" && grant.grantee === bucket.owner ? h("span", { class: "muted" }, "owner (cannot be revoked)") : h("button", { type: "button", class: "danger", "aria-label": `Revoke ${grant.permission} from ${grant.granteeType} ${grant.grantee}`,
        onclick: () => attempt(async () => { await buckets.revoke(bucketId, spec); say(`Revoked ${spec}`); await reload(); }) }, "Revoke")));
  });
  main.replaceChildren(h("section", { class: "card" },
    h("nav", { "aria-label": "Breadcrumb" }, h("ol", { class: "breadcrumbs" },
      h("li", {}, h("a", { href: `#/b/${bucketId}/` }, bucket.name || bucketId)), h("li", {}, h("span", { "aria-current": "page" }, "Permissions")))),
    h("h1", {}, `Permissions of ${bucket.name || bucketId}`),
    h("p", { id: "visibility" }, isPublic ? "This bucket is public: anyone can read it." : "This bucket is private.", " ",
      h("button", { type: "button", class: "secondary", onclick: () => attempt(async () => {
        if (isPublic) await buckets.revoke(bucketId, "GROUP:AllUsers");
        else await buckets.grant(bucketId, "GROUP", "AllUsers", "READ");
        say(isPublic ? "The bucket is private now" : "The bucket is public now");
        await reload();
      }) }, isPublic ? "Make private" : "Make public")),
    h("div", { class: "scroll" }, h("table", { id: "grants" }, h("caption", { class: "visually-hidden" }, "Grants"),
      h("thead", {}, h("tr", {}, ["Grantee type", "Grantee", "Permission", "Actions"].map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows))),
    h("h2", {}, "Grant a permission"),
    h("form", { class: "inline-form", onsubmit: (event) => {
      event.preventDefault();
      const form = event.target;
      attempt(async () => {
        await buckets.grant(bucketId, form.granteeType.value, form.grantee.value.trim(), form.permission.value);
        say(`Granted ${form.permission.value} to ${form.grantee.value}`);
        await reload();
      });
    } },
    h("label", { for: "grantee-type" }, "Grantee type"),
    h("select", { id: "grantee-type", name: "granteeType" }, h("option", { value: "USER" }, "USER"), h("option", { value: "GROUP" }, "GROUP")),
    h("label", { for: "grantee" }, "Grantee"), h("input", { id: "grantee", name: "grantee", required: true, maxlength: 256 }),
    h("label", { for: "permission" }, "Permission"),
    h("select", { id: "permission", name: "permission" }, PERMISSIONS.map((name) => h("option", { value: name }, name))),
    h("button", { type: "submit" }, "Grant")),
    h("h2", { id: "share-links-title" }, "Share links on this bucket"),
    h("div", { id: "bucket-shares" })));
  const links = document.getElementById("bucket-shares");
  const showLinks = async () => {
    const list = (await shares.list(bucketId)).filter((share) => shareState(share) === "active");
    links.replaceChildren(list.length ? shareTable(list, showLinks, { showKey: true })
      : h("p", { class: "muted" }, "No active share links."));
  };
  await attempt(showLinks);
}

// ------------------------------------------------------------------------------------ uploads panel
const queue = new Queue(renderUpload);
const itemElements = new Map();

function enqueue(bucketId, folder, picked) {
  for (const { file, path } of picked) queue.add(file, bucketId, folder + path.replace(/^\/+/, ""));
}

function renderUpload(item) {
  const panel = document.getElementById("uploads");
  panel.hidden = false;
  let parts = itemElements.get(item);
  if (!parts) {
    const label = item.key;
    parts = {
      progress: h("progress", { max: item.file.size || 1, value: 0, "aria-label": `Upload progress of ${label}` }),
      text: h("span", { class: "muted small" }),
      state: h("span", { class: "state" }),
      pause: h("button", { type: "button", class: "secondary", "aria-label": `Pause ${label}`, onclick: () => item.pause() }, "Pause"),
      resume: h("button", { type: "button", class: "secondary", "aria-label": `Resume ${label}`, onclick: () => queue.resume(item) }, "Resume"),
      retry: h("button", { type: "button", class: "secondary", "aria-label": `Retry ${label}`, onclick: () => queue.resume(item) }, "Retry"),
      cancel: h("button", { type: "button", class: "danger", "aria-label": `Cancel ${label}`, onclick: () => item.cancel() }, "Cancel"),
    };
    parts.element = h("li", { class: "upload" },
      h("div", { class: "upload-name" }, h("strong", {}, label), " ", parts.state),
      parts.progress, parts.text,
      h("div", { class: "actions" }, parts.pause, parts.resume, parts.retry, parts.cancel));
    itemElements.set(item, parts);
    document.getElementById("queue").append(parts.element);
  }
  const sent = item.state === "done" ? item.file.size : item.sent;
  parts.progress.value = item.file.size ? sent : (item.state === "done" ? 1 : 0);
  parts.state.textContent = { queued: "queued", uploading: "uploading", paused: "paused", done: "done", failed: "failed", cancelled: "cancelled" }[item.state];
  parts.element.dataset.state = item.state;
  const speed = item.speed;
  const details = [`${formatBytes(sent)} of ${formatBytes(item.file.size)}`];
  if (item.state === "uploading" && speed > 0) details.push(`${formatBytes(speed)}/s`, `${formatDuration((item.file.size - sent) / speed)} left`);
  if (item.message) details.push(item.message);
  parts.text.textContent = details.join(" · ");
  parts.pause.hidden = item.state !== "uploading" && item.state !== "queued";
  parts.resume.hidden = item.state !== "paused";
  parts.retry.hidden = item.state !== "failed";
  parts.cancel.hidden = item.state === "done" || item.state === "cancelled";
  if (item.state === "failed") showError(`${item.key}: ${item.message}`);
  renderTotal();
  if (item.state === "done" && queue.items.every((other) => other.state !== "uploading" && other.state !== "queued")) {
    refreshListingSoon();
  }
}

function clearFinished() {
  for (const item of [...queue.items]) {
    if (item.state !== "done" && item.state !== "cancelled") continue;
    itemElements.get(item)?.element.remove();
    itemElements.delete(item);
    queue.items.splice(queue.items.indexOf(item), 1);
  }
  renderTotal();
}
document.getElementById("clear-finished").addEventListener("click", clearFinished);

function renderTotal() {
  const { sent, size, speed } = queue.totals;
  const progress = document.getElementById("total-progress");
  progress.max = size || 1;
  progress.value = Math.min(sent, size);
  const done = queue.items.filter((item) => item.state === "done").length;
  const parts = [`${done} of ${queue.items.length} files`, `${formatBytes(sent)} of ${formatBytes(size)}`];
  if (speed > 0) parts.push(`${formatBytes(speed)}/s`, `${formatDuration((size - sent) / speed)} left`);
  document.getElementById("total-text").textContent = parts.join(" · ");
}

let refreshTimer = null;
function refreshListingSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (location.hash.startsWith("#/b/")) route(); }, 300);
}

// ------------------------------------------------------------------------------------ router
// One route at a time: a hash change during a slow one (the sign-in check, a listing) renders after
// it, so the page always ends on the latest address, never on an older answer.
let routing = Promise.resolve();
function route() {
  routing = routing.then(renderRoute, renderRoute);
  return routing;
}

async function renderRoute() {
  await settleSignIn();
  renderWho();
  if (offeredToken) {  // the safe answer has the focus: Enter keeps the signed-in user
    main.replaceChildren(switchUserCard());
    document.getElementById("switch-user").querySelector("button.secondary").focus();
    return;
  }
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const bucketMatch = path.match(/^\/b\/([0-9a-f-]{36})\/(.*)$/i);
  const permissionsMatch = path.match(/^\/p\/([0-9a-f-]{36})$/i);
  try {
    if (bucketMatch) await bucketPage(bucketMatch[1], bucketMatch[2].split("/").map(decodeURIComponent).join("/"), params);
    else if (permissionsMatch) await permissionsPage(permissionsMatch[1]);
    else if (path === "/sign-in") main.replaceChildren(signInCard());
    else await bucketsPage(params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && token()) {
      setToken(null);  // the server no longer accepts it (expired, or its key changed)
      renderWho();
      showError(`You are signed out: ${error.message}`);
    } else {
      showError(error);
    }
    if (error instanceof ApiError && error.status === 401) main.replaceChildren(signInCard());
  }
}

window.addEventListener("hashchange", () => { clearError(); route(); });
route();
