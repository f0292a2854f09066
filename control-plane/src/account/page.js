// Manage SSH Keys: renders the account's JSON (/account/api/...) and polls it every
// second, so a login shows up and a revoked session disappears without a reload.
// Everything from the server is set with textContent: names and comments are text.
"use strict";

const el = (id) => document.getElementById(id);
const text = (tag, value, cls) => {
  const node = document.createElement(tag);
  node.textContent = value == null || value === "" ? "—" : String(value);
  if (cls) node.className = cls;
  return node;
};
const row = (cells) => {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell);
  return tr;
};
const when = (at) => (at ? new Date(at).toLocaleString() : "—");

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(response.status);
  return response.json();
}

async function renderList() {
  const data = await getJson("/account/api/ssh-keys");
  const body = el("keys").querySelector("tbody");
  body.replaceChildren();
  for (const key of data.keys) {
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/account/ssh-keys/" + encodeURIComponent(key.id);
    link.textContent = key.name;
    link.className = "key-link";
    name.appendChild(link);
    body.appendChild(row([
      name,
      text("td", key.type),
      text("td", key.fingerprint, "mono"),
      text("td", key.comment),
      text("td", when(key.created_at)),
      text("td", key.expires_at ? when(key.expires_at) : "never"),
      text("td", key.connected ? key.connected + " connected" : "none", key.connected ? "live" : ""),
    ]));
  }
  el("no-keys").hidden = data.keys.length > 0;
}

async function renderKey(id) {
  let data;
  try {
    data = await getJson("/account/api/ssh-keys/" + encodeURIComponent(id));
  } catch (e) {
    el("key-name-title").textContent = "No such key";
    el("deleted-note").hidden = false;
    el("key-facts").hidden = true;
    el("delete-area").hidden = true;
    el("connected").querySelector("tbody").replaceChildren();
    el("no-connected").hidden = false;
    el("pending").hidden = true;
    return;
  }
  const key = data.key;
  el("key-name-title").textContent = key ? key.summary.name : "Deleted key";
  el("confirm-name").textContent = key ? key.summary.name : "";
  el("deleted-note").hidden = !data.deleted;
  el("delete-area").hidden = data.deleted;
  el("key-facts").hidden = !key;
  if (key) {
    el("f-type").textContent = key.summary.type;
    el("f-fingerprint").textContent = key.summary.fingerprint;
    el("f-comment").textContent = key.summary.comment || "—";
    el("f-created").textContent = when(key.summary.created_at);
    el("f-expires").textContent = key.summary.expires_at ? when(key.summary.expires_at) : "never";
    el("f-public-key").textContent = key.public_key;
  } else {
    el("f-public-key").textContent = "—";
  }
  el("f-last-used").textContent = data.last_used ? when(data.last_used) : "never";
  const body = el("connected").querySelector("tbody");
  body.replaceChildren();
  for (const machine of data.connected) {
    body.appendChild(row([
      text("td", machine.instance),
      text("td", machine.contested ? machine.user + " (contested: another key was also claimed for this connection)" : machine.user),
      text("td", machine.source_ip, "mono"),
      text("td", when(machine.since)),
    ]));
  }
  el("connected").hidden = data.connected.length === 0;
  el("no-connected").hidden = data.connected.length > 0;
  const pending = el("pending-list");
  pending.replaceChildren();
  for (const p of data.pending) {
    pending.appendChild(text("li", p.instance_id + ": user " + p.user + " (" + p.path + "), since " + when(p.behind_since) + ": " + p.error));
  }
  el("pending").hidden = data.pending.length === 0;
  const instances = el("instances");
  instances.replaceChildren();
  for (const instance of data.instances) {
    const box = document.createElement("div");
    box.appendChild(text("h3", instance.instance));
    const list = document.createElement("ul");
    for (const hk of instance.host_keys) list.appendChild(text("li", hk.type + " " + hk.fingerprint, "mono"));
    if (instance.host_keys.length === 0) list.appendChild(text("li", "no host keys reported yet"));
    box.appendChild(list);
    const download = document.createElement("a");
    download.href = instance.known_hosts;
    download.textContent = "Download known_hosts";
    download.setAttribute("download", "known_hosts");
    box.appendChild(download);
    instances.appendChild(box);
  }
}

async function addKey(event) {
  event.preventDefault();
  const error = el("add-error");
  error.hidden = true;
  const response = await fetch("/account/api/ssh-keys", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: el("key-name").value, public_key: el("key-text").value }),
  });
  if (response.ok) {
    el("key-name").value = "";
    el("key-text").value = "";
    await renderList();
    return;
  }
  let message = "The key could not be added (" + response.status + ").";
  try { message = (await response.json()).error || message; } catch (e) { /* keep */ }
  error.textContent = message;
  error.hidden = false;
}

async function deleteKey(id) {
  const response = await fetch("/account/api/ssh-keys/" + encodeURIComponent(id), { method: "DELETE" });
  if (response.ok || response.status === 404) {
    el("confirm").hidden = true;
    await renderKey(id);
  }
}

function start() {
  const match = location.pathname.match(/^\/account\/ssh-keys\/([^/]+)$/);
  if (match) {
    const id = decodeURIComponent(match[1]);
    el("key-view").hidden = false;
    el("delete-button").addEventListener("click", () => { el("confirm").hidden = false; });
    el("cancel-delete").addEventListener("click", () => { el("confirm").hidden = true; });
    el("confirm-delete").addEventListener("click", () => deleteKey(id));
    const tick = () => renderKey(id).catch(() => {}).finally(() => setTimeout(tick, 1000));
    tick();
  } else {
    el("list-view").hidden = false;
    el("add-form").addEventListener("submit", (e) => { addKey(e).catch(() => {}); });
    const tick = () => renderList().catch(() => {}).finally(() => setTimeout(tick, 1000));
    tick();
  }
}

document.addEventListener("DOMContentLoaded", start);
