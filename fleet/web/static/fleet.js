// The fleet page: one canvas cell per device, coloured by state; filters; a device's detail
// with live values (server-sent events).  Plain JS, no build step.
"use strict";
(function () {
  const COLOURS = { healthy: "#2e9e44", down: "#d62b2b", starting: "#e0b020", unknown: "#9a5fc0", faulted: "#e05fd0" };
  const HISTORY = 30;
  const $ = (id) => document.getElementById(id);
  const grid = $("grid"), ctx = grid.getContext("2d");
  let fleet = null;          // the last /api/status: devices [[name, kind, address, worker]], columns
  let visible = [];          // indices of the devices shown, in plan order
  let cell = 10, cols = 1;
  let selected = null, valueFeed = null, drawPending = false;
  const api = (window.fleet = { renders: 0, lastRenderMs: null, firstRenderMs: null, updates: 0 });

  function stateName(i) { return fleet.states[fleet.state[i]]; }

  function globToRegExp(text) {
    const escaped = text.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    return new RegExp(/[*?]/.test(text) ? "^" + escaped + "$" : escaped, "i");
  }

  function applyFilter() {
    if (!fleet) return;
    const text = $("filter").value.trim(), kind = $("kind").value, state = $("state").value;
    const match = text ? globToRegExp(text) : null;
    visible = [];
    for (let i = 0; i < fleet.devices.length; i++) {
      const d = fleet.devices[i];
      if (match && !match.test(d[0])) continue;
      if (kind && d[1] !== kind) continue;
      if (state && stateName(i) !== state) continue;
      visible.push(i);
    }
    $("count").textContent = visible.length + " shown";
    layout();
  }

  function layout() {
    const width = $("gridbox").clientWidth || 800;
    const n = Math.max(visible.length, 1);
    const room = Math.max(window.innerHeight - grid.getBoundingClientRect().top - 20, 200);
    cell = Math.max(4, Math.min(96, Math.floor(Math.sqrt((width * room) / n))));
    cols = Math.max(1, Math.floor(width / cell));
    const rows = Math.ceil(n / cols);
    const ratio = window.devicePixelRatio || 1;
    grid.style.height = rows * cell + "px";
    grid.width = Math.floor(width * ratio);
    grid.height = Math.floor(rows * cell * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw();
  }

  function sparkline(c, x, y, w, h, values, colour) {
    if (!values || values.length < 2) return;
    let max = 0;
    for (const v of values) if (v > max) max = v;
    max = max || 1;
    c.strokeStyle = colour; c.lineWidth = 1; c.beginPath();
    values.forEach((v, k) => {
      const px = x + (k / (values.length - 1)) * w, py = y + h - (v / max) * h;
      k ? c.lineTo(px, py) : c.moveTo(px, py);
    });
    c.stroke();
  }

  function draw() {
    drawPending = false;
    if (!fleet) return;
    const begun = performance.now();
    const gap = cell >= 8 ? 1 : 0;
    ctx.clearRect(0, 0, grid.width, grid.height);
    const big = cell >= 48;
    ctx.font = "10px system-ui, sans-serif";
    for (let k = 0; k < visible.length; k++) {
      const i = visible[k], x = (k % cols) * cell, y = Math.floor(k / cols) * cell;
      ctx.fillStyle = COLOURS[stateName(i)] || "#555";
      ctx.fillRect(x, y, cell - gap, cell - gap);
      if (fleet.faults[i]) { ctx.strokeStyle = "#fff"; ctx.strokeRect(x + 1.5, y + 1.5, cell - gap - 3, cell - gap - 3); }
      if (big) {
        ctx.fillStyle = "#000";
        ctx.fillText(fleet.devices[i][0].slice(0, Math.floor(cell / 6)), x + 3, y + 11);
        sparkline(ctx, x + 3, y + 16, cell - gap - 6, cell - gap - 20, fleet.history[i], "#000a");
      }
      if (selected === i) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, cell - gap - 2, cell - gap - 2); }
    }
    const elapsed = performance.now() - begun;
    api.renders++; api.lastRenderMs = elapsed;
    if (api.firstRenderMs === null) { api.firstRenderMs = elapsed; api.firstRenderAt = performance.now(); }
  }

  function requestDraw() { if (!drawPending) { drawPending = true; requestAnimationFrame(draw); } }

  function summary() {
    const counts = {};
    fleet.state.forEach((s) => { counts[fleet.states[s]] = (counts[fleet.states[s]] || 0) + 1; });
    const lats = fleet.latency.filter((v) => v !== null).sort((a, b) => a - b);
    const pct = (f) => (lats.length ? lats[Math.max(0, Math.ceil(f * lats.length) - 1)].toFixed(1) + " ms" : "-");
    const rest = Object.keys(counts).filter((s) => s !== "healthy").map((s) => `, ${counts[s]} ${s}`).join("");
    $("summary").textContent = `${counts.healthy || 0} healthy / ${fleet.state.length} total${rest} · p50 ${pct(0.5)} · p99 ${pct(0.99)}`;
    $("title").textContent = "fleet " + fleet.fleet;
  }

  async function load() {
    const answer = await fetch("/api/status");
    fleet = await answer.json();
    api.loadedAt = performance.now();
    summary();
    applyFilter();
    $("readonly").hidden = !!fleet.write;
    $("send").disabled = !fleet.write;
    $("faultform").hidden = !fleet.faults_enabled;
    $("inject").disabled = $("clear").disabled = !fleet.write;
  }

  function update(data) {
    if (data.version !== fleet.version) { load(); return; }
    for (const key of ["state", "latency", "error", "checked", "restarts", "faults", "time"]) fleet[key] = data[key];
    data.latency.forEach((v, i) => {
      if (v === null) return;
      const h = fleet.history[i];
      if (h.length && data.checked[i] === h.checkedAt) return;
      h.push(v); h.checkedAt = data.checked[i];
      if (h.length > HISTORY) h.shift();
    });
    api.updates++;
    summary();
    if ($("state").value) applyFilter(); else requestDraw();  // a state filter follows the states
    if (selected !== null) { showState(selected); $("factive").textContent = fleet.faults[selected] || ""; }
    $("feed").textContent = "live · " + new Date(data.time * 1000).toLocaleTimeString();
  }

  function at(event) {
    const box = grid.getBoundingClientRect();
    const col = Math.floor((event.clientX - box.left) / cell), row = Math.floor((event.clientY - box.top) / cell);
    if (col < 0 || col >= cols) return null;
    const k = row * cols + col;
    return k >= 0 && k < visible.length ? visible[k] : null;
  }

  function showState(i) {
    const d = fleet.devices[i], lat = fleet.latency[i];
    $("dstate").innerHTML = "";
    const line = document.createElement("div");
    line.textContent = `${stateName(i)} · ${d[1]} at ${d[2]} · worker ${d[3]} · ` +
      (lat === null ? "no latency" : lat.toFixed(2) + " ms") + ` · restarts ${fleet.restarts[i]}` +
      (fleet.faults[i] ? ` · fault: ${fleet.faults[i]}` : "") +
      (fleet.error[i] ? ` · ${fleet.error[i]}` : "");
    line.className = "state-" + stateName(i);
    $("dstate").appendChild(line);
    const spark = $("spark"), c = spark.getContext("2d");
    c.clearRect(0, 0, spark.width, spark.height);
    sparkline(c, 2, 2, spark.width - 4, spark.height - 4, fleet.history[i], COLOURS[stateName(i)]);
  }

  function table(el, rows) {
    el.innerHTML = "";
    for (const [k, v] of rows) {
      const tr = el.insertRow();
      tr.insertCell().textContent = k;
      const td = tr.insertCell(); td.textContent = v; td.className = "v";
    }
  }

  function showValues(data) {
    const box = $("values");
    if (data.error) { box.textContent = data.error; return; }
    const t = document.createElement("table"); t.className = "values";
    table(t, data.values.map((v) => [`${v.name} (${v.type})`, JSON.stringify(v.values)]));
    box.replaceChildren(t);
    $("vstamp").textContent = new Date().toLocaleTimeString();
    api.valueUpdates = (api.valueUpdates || 0) + 1;
    api.values = data.values;
  }

  async function select(i) {
    selected = i; requestDraw();
    if (valueFeed) valueFeed.close();
    const name = fleet.devices[i][0];
    $("detail").hidden = false; $("dname").textContent = name; $("values").textContent = "reading…";
    $("identity").innerHTML = ""; $("wresult").textContent = "";
    showState(i);
    $("factive").textContent = fleet.faults[i] || "";
    $("fresult").textContent = "";
    api.valueUpdates = 0;
    const answer = await fetch("/api/devices/" + encodeURIComponent(name));
    const data = await answer.json();
    if (selected !== i) return;
    table($("identity"), Object.entries(data.identity || {}));
    showValues(data);
    valueFeed = new EventSource("/api/devices/" + encodeURIComponent(name) + "/events");
    valueFeed.onmessage = (e) => showValues(JSON.parse(e.data));
  }

  grid.addEventListener("click", (e) => { const i = at(e); if (i !== null) select(i); });
  grid.addEventListener("mousemove", (e) => {
    const i = at(e), tip = $("tip");
    if (i === null) { tip.hidden = true; return; }
    const d = fleet.devices[i], lat = fleet.latency[i];
    tip.textContent = `${d[0]} · ${stateName(i)} · ${d[2]}` + (lat === null ? "" : ` · ${lat.toFixed(1)} ms`);
    tip.style.left = e.offsetX + 12 + "px"; tip.style.top = e.offsetY + 12 + "px"; tip.hidden = false;
  });
  grid.addEventListener("mouseleave", () => ($("tip").hidden = true));
  $("close").addEventListener("click", () => { $("detail").hidden = true; selected = null; if (valueFeed) valueFeed.close(); layout(); });
  for (const id of ["filter", "kind", "state"]) {
    $(id).addEventListener("input", applyFilter);
    $(id).addEventListener("change", applyFilter);
  }
  window.addEventListener("resize", layout);
  $("token").value = sessionStorage.getItem("cpppo-fleet-token") || "";
  async function post(what, body) {  // a token-guarded change to the selected device
    const token = $("token").value;
    sessionStorage.setItem("cpppo-fleet-token", token);
    const answer = await fetch("/api/devices/" + encodeURIComponent(fleet.devices[selected][0]) + "/" + what, {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify(body),
    });
    return [answer, await answer.json()];
  }

  $("write").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (selected === null) return;
    const [answer, data] = await post("write", { target: $("target").value, value: $("value").value });
    const out = $("wresult");
    out.textContent = answer.ok ? `wrote ${data.target} = ${data.value}` : `${answer.status}: ${data.error}`;
    out.className = answer.ok ? "ok" : "err";
    api.lastWrite = { status: answer.status, data: data };
  });

  async function faultAction(what, body) {
    if (selected === null) return;
    const [answer, data] = await post(what, body);
    const out = $("fresult");
    out.textContent = answer.ok ? `${what === "clear" ? "cleared" : "injected"} on ${data.done.length} device(s)`
      : `${answer.status}: ${data.error}`;
    out.className = answer.ok ? "ok" : "err";
    api.lastFault = { status: answer.status, data: data };
  }
  $("faultform").addEventListener("submit", (e) => {
    e.preventDefault();
    faultAction("fault", { kind: $("fkind").value, arg: $("farg").value, for: $("ffor").value });
  });
  $("clear").addEventListener("click", () => faultAction("clear", {}));

  api.visibleNames = () => visible.map((i) => fleet.devices[i][0]);
  api.stateOf = (name) => { const i = fleet.devices.findIndex((d) => d[0] === name); return i < 0 ? null : stateName(i); };
  api.select = (name) => select(fleet.devices.findIndex((d) => d[0] === name));
  api.ready = load().then(() => {
    const feed = new EventSource("/api/events");
    feed.onmessage = (e) => update(JSON.parse(e.data));
    feed.onerror = () => ($("feed").textContent = "feed lost, retrying…");
  });
})();
