// chronoraft dashboard: plain JavaScript over the REST API (/api/v1), drawn with DOM and SVG.
// No framework and no build step. Every request carries the pasted token as a Bearer header.
// A view keeps showing its last data when a refresh fails (503 while PostgreSQL is away, a
// controller restarting): the banner says why, the next good refresh clears it.
"use strict";

const TOKEN_KEY = "chronoraft.token";
const REFRESH_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const ACTIVE_STATES = new Set(["pending", "dispatched", "running", "waiting"]);
const NODE_COLORS = ["#1f6feb", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#0550ae", "#cf222e"];
const STATE_FILL = {
  succeeded: "#1a7f37", failed: "#cf222e", timed_out: "#cf222e", upstream_failed: "#cf222e",
  running: "#0969da", dispatched: "#0969da", pending: "#9a6700", waiting: "#d4a72c",
  cancelled: "#8c959f", skipped: "#8c959f",
};

// ----- DOM helpers (text only through textContent: API data is never parsed as HTML) -----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function badge(state) {
  const text = state || "—";
  return h("span", { class: `badge state-${text}`, "data-state": text }, text);
}

function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// ----- time formatting -----

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const abs = Math.abs(seconds);
  if (abs < 1) return `${Math.round(seconds * 1000)} ms`;
  if (abs < 90) return `${seconds.toFixed(abs < 10 ? 2 : 1)} s`;
  if (abs < 5400) return `${Math.round(seconds / 60)} min`;
  if (abs < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function relative(iso) {
  if (!iso) return "—";
  const delta = (new Date(iso).getTime() - Date.now()) / 1000;
  return delta >= 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(-delta)} ago`;
}

function timeCell(iso) {
  return h("span", { title: iso ? new Date(iso).toString() : "" }, iso ? relative(iso) : "—");
}

// ----- API client -----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`api/v1/${path}`, init);
  } catch (err) {
    throw new ApiError(0, "unreachable", `this controller does not answer (${err.message})`);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(resp.status, error.code || "http_error", error.message || resp.statusText);
  }
  return data;
}

function explain(err) {
  if (!(err instanceof ApiError)) return `Unexpected error: ${err.message || err}`;
  switch (err.status) {
    case 0:
      return `Controller unreachable: ${err.message}. Showing the last data received.`;
    case 401:
      return `401 Unauthorized: ${err.message}. Paste a valid API token at the top right.`;
    case 403:
      return `403 Forbidden: ${err.message}. This token may not do that; writes need an admin token.`;
    case 503:
      return `503 Database unavailable: ${err.message}. Showing the last data received; it refreshes when PostgreSQL is back.`;
    default:
      return `${err.status} ${err.code}: ${err.message}`;
  }
}

// ----- banner (state of reads) and toast (result of an action) -----

function setBanner(err) {
  const banner = document.getElementById("banner");
  if (!err) {
    banner.hidden = true;
    banner.textContent = "";
    banner.removeAttribute("data-status");
    return;
  }
  banner.hidden = false;
  banner.className = err.status === 503 || err.status === 0 ? "warn" : "";
  banner.dataset.status = String(err.status ?? "");
  banner.textContent = explain(err);
}

let toastTimer = null;
function toast(message, isError = false) {
  const el = document.getElementById("toast");
  el.hidden = false;
  el.className = isError ? "error" : "";
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, isError ? 9000 : 3500);
}

async function act(label, fn) {
  try {
    const result = await fn();
    toast(label);
    await refreshNow();
    return result;
  } catch (err) {
    toast(explain(err), true);
    return null;
  }
}

// ----- views -----
// A view is mount(el, params) -> {refresh: async () => void}. mount draws the parts that must
// survive refreshes (inputs keep focus); refresh replaces only data, and throws on failure.

const views = {};

views.cluster = (el) => {
  const cards = h("div", { class: "cards", id: "cluster-cards" });
  const controllers = h("div");
  const workers = h("div");
  replace(el, h("h1", {}, "Cluster"), cards, h("h2", {}, "Controllers"), controllers,
    h("h2", {}, "Workers"), workers);
  return {
    async refresh() {
      const c = await api("GET", "cluster");
      const alive = c.workers || [];
      const running = alive.reduce((n, w) => n + w.running, 0);
      const capacity = alive.reduce((n, w) => n + w.capacity, 0);
      replace(cards,
        card("Leader", h("span", { id: "leader" }, c.leader.node_id || "none"),
          c.leader.since ? `since ${fmtTime(c.leader.since)}` : "no leader claimed yet"),
        card("Epoch", h("span", { id: "epoch" }, c.epoch ?? "—"), "Raft term of the leadership"),
        card("This node", h("span", { id: "this-node" }, c.node.id), [badge(c.node.role), ` pid ${c.node.pid}`]),
        card("Live workers", h("span", { id: "worker-count" }, alive.length),
          `${(c.workers_lost || []).length} lost`),
        card("Load", `${running} / ${capacity}`, "runs active / worker slots"));
      const rows = [h("tr", { "data-node": c.node.id },
        h("td", {}, h("strong", {}, c.node.id), " (this node)"), h("td", {}, badge(c.node.role)),
        h("td", {}, c.node.raft), h("td", {}, c.node.http), h("td", { class: "num" }, c.node.pid),
        h("td", {}, c.node.version), h("td", {}, fmtTime(c.node.started_at)))];
      for (const peer of c.peers || []) {
        rows.push(h("tr", { "data-peer": peer.raft },
          h("td", {}, "peer"), h("td", {}, badge(peer.connected ? "connected" : "disconnected")),
          h("td", {}, peer.raft), h("td", { colspan: 4, class: "muted" },
            peer.connected ? "connected over Raft" : "not connected")));
      }
      replace(controllers, table(["Node", "Role", "Raft", "HTTP", "PID", "Version", "Started"], rows));
      const workerRows = [...alive, ...(c.workers_lost || [])].map((w) => h("tr", { "data-worker": w.id },
        h("td", {}, w.id), h("td", {}, badge(!w.alive ? "lost" : w.draining ? "draining" : "alive")),
        h("td", {}, w.address), h("td", {}, loadBar(w.running, w.capacity)),
        h("td", {}, Object.entries(w.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—"),
        h("td", {}, relative(w.last_heartbeat)), h("td", {}, w.version)));
      replace(workers, workerRows.length
        ? table(["Worker", "Status", "Address", "Load", "Labels", "Heartbeat", "Version"], workerRows)
        : h("div", { class: "empty" }, "No worker has registered."));
    },
  };
};

function card(label, value, sub) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
}

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) =>
    h("th", { class: /^(PID|Attempt|Epoch|Duration|Exit)$/.test(t) ? "num" : null }, t)))),
  h("tbody", {}, rows));
}

function loadBar(running, capacity) {
  const bar = h("span");
  bar.style.width = `${capacity ? Math.min(100, (100 * running) / capacity) : 0}%`;
  return [h("span", { class: "load", title: `${running} of ${capacity}` }, bar), `${running}/${capacity}`];
}

views.jobs = (el) => {
  const search = h("input", { type: "search", id: "job-search", placeholder: "Search by name" });
  const status = h("select", { id: "job-status" }, h("option", { value: "" }, "all"),
    h("option", { value: "active" }, "active"), h("option", { value: "paused" }, "paused"));
  const info = h("span", { class: "muted", id: "jobs-total" });
  const prev = h("button", { class: "secondary", type: "button" }, "‹ Prev");
  const next = h("button", { class: "secondary", type: "button" }, "Next ›");
  const body = h("div", { id: "jobs" });
  const pageSize = 50;
  let offset = 0;
  let timer = null;
  const again = () => { refreshNow(); };
  search.addEventListener("input", () => { clearTimeout(timer); offset = 0; timer = setTimeout(again, 250); });
  status.addEventListener("change", () => { offset = 0; again(); });
  prev.addEventListener("click", () => { offset = Math.max(0, offset - pageSize); again(); });
  next.addEventListener("click", () => { offset += pageSize; again(); });
  replace(el, h("h1", {}, "Jobs"), h("div", { class: "toolbar" }, search, status, prev, next, info), body);
  return {
    async refresh() {
      const q = new URLSearchParams({ limit: pageSize, offset });
      if (search.value.trim()) q.set("q", search.value.trim());
      if (status.value) q.set("status", status.value);
      const page = await api("GET", `jobs?${q}`);
      info.textContent = `${page.total} job(s)`;
      prev.disabled = offset === 0;
      next.disabled = offset + page.items.length >= page.total;
      if (!page.items.length) {
        replace(body, h("div", { class: "empty" }, "No job matches."));
        return;
      }
      replace(body, table(["Name", "Schedule", "Status", "Next run", "Last result", "Actions"],
        page.items.map(jobRow)));
    },
  };
};

function jobRow(job) {
  const ref = encodeURIComponent(job.name);
  const last = job.last_run;
  return h("tr", { "data-job": job.name, "data-id": job.id },
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name),
      job.description ? h("div", { class: "muted" }, job.description) : null),
    h("td", {}, h("code", {}, job.schedule), job.timezone !== "UTC" ? ` (${job.timezone})` : ""),
    h("td", { class: "job-status" }, badge(job.paused ? "paused" : "active")),
    h("td", {}, timeCell(job.next_run_at)),
    h("td", {}, last ? [h("a", { href: `#/runs/${last.id}` }, badge(last.state)), " ", timeCell(last.finished_at)] : "—"),
    h("td", { class: "actions" }, jobActions(job, ref)));
}

function jobActions(job, ref) {
  const toggle = job.paused
    ? h("button", { class: "resume", type: "button", onclick: () => act(`resumed ${job.name}`, () => api("POST", `jobs/${ref}/resume`)) }, "Resume")
    : h("button", { class: "pause secondary", type: "button", onclick: () => act(`paused ${job.name}`, () => api("POST", `jobs/${ref}/pause`)) }, "Pause");
  const trigger = h("button", {
    class: "trigger secondary", type: "button",
    onclick: () => act(`triggered ${job.name}`, () => api("POST", `jobs/${ref}/trigger`)),
  }, "Trigger");
  return [toggle, trigger];
}

views.job = (el, [id]) => {
  const title = h("h1", {}, `Job ${id}`);
  const fields = h("div");
  const chart = h("div", { class: "chart", id: "duration-chart" });
  const runs = h("div", { id: "job-runs" });
  replace(el, title, fields, h("h2", {}, "Durations of recent runs"), chart, h("h2", {}, "Runs"), runs);
  return {
    async refresh() {
      const job = await api("GET", `jobs/${encodeURIComponent(id)}`);
      const page = await api("GET", `runs?job_id=${job.id}&limit=60`);
      replace(title, job.name, badge(job.paused ? "paused" : "active"),
        h("span", { class: "actions" }, jobActions(job, encodeURIComponent(job.name))));
      const command = job.args ? [job.command, ...job.args].join(" ") : job.command;
      replace(fields, h("dl", { class: "fields" },
        field("Schedule", h("code", {}, job.schedule), ` ${job.timezone}`),
        field("Next run", job.next_run_at ? `${fmtTime(job.next_run_at)} (${relative(job.next_run_at)})` : "—"),
        field("Command", h("code", {}, command)),
        field("Timeout", job.timeout ? fmtDuration(job.timeout) : "none"),
        field("Retries", `${job.max_retries} (backoff ${fmtDuration(job.retry_backoff)})`),
        field("Overlap / catch-up", `${job.overlap} / ${job.catchup} within ${fmtDuration(job.catchup_window)}`),
        field("Labels", Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—"),
        field("Counters", `missed ${job.counters.missed}, skipped by overlap ${job.counters.skipped_by_overlap}, buffer dropped ${job.counters.buffer_dropped}`),
        field("Description", job.description || "—")));
      replace(chart, durationChart(page.items.slice().reverse()));
      replace(runs, page.items.length ? runsTable(page.items) : h("div", { class: "empty" }, "No runs yet."));
    },
  };
};

function field(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

function runsTable(items) {
  return table(["Run", "Slot", "Trigger", "State", "Attempt", "Worker", "Epoch", "Duration"],
    items.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("a", { href: `#/runs/${r.id}` }, `#${r.id}`)),
      h("td", {}, fmtTime(r.scheduled_for), r.late ? " (late)" : ""),
      h("td", {}, r.trigger), h("td", {}, badge(r.state)),
      h("td", { class: "num" }, `${r.attempt}/${r.max_retries + 1}`),
      h("td", {}, r.worker_id || "—"), h("td", { class: "num" }, r.epoch ?? "—"),
      h("td", { class: "num" }, fmtDuration(r.duration_seconds)))));
}

// Bars of run durations, oldest left; colour is the state, click opens the run.
function durationChart(items) {
  if (!items.length) return h("div", { class: "empty" }, "No runs yet.");
  const width = 900, height = 180, left = 52, bottom = 22, top = 10;
  const max = Math.max(0.001, ...items.map((r) => r.duration_seconds || 0));
  const step = (width - left - 8) / Math.max(items.length, 12);
  const bars = items.map((r, i) => {
    const value = r.duration_seconds;
    const barH = value === null ? 3 : Math.max(2, ((height - top - bottom) * value) / max);
    const x = left + i * step + 1;
    return s("a", { href: `#/runs/${r.id}` },
      s("rect", {
        class: "bar", "data-run": r.id, x, y: height - bottom - barH, width: Math.max(2, step - 2),
        height: barH, fill: STATE_FILL[r.state] || "#8c959f",
      }, s("title", {}, `run #${r.id} ${r.state} ${fmtDuration(value)} at ${fmtTime(r.scheduled_for)}`)));
  });
  return s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "run durations" },
    s("line", { x1: left, y1: top, x2: left, y2: height - bottom, stroke: "#d0d7de" }),
    s("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#d0d7de" }),
    s("text", { x: left - 6, y: top + 10, "text-anchor": "end", "font-size": 11, fill: "#656d76" }, fmtDuration(max)),
    s("text", { x: left - 6, y: height - bottom, "text-anchor": "end", "font-size": 11, fill: "#656d76" }, "0"),
    s("text", { x: left, y: height - 6, "font-size": 11, fill: "#656d76" }, fmtTime(items[0].scheduled_for)),
    s("text", { x: width - 4, y: height - 6, "text-anchor": "end", "font-size": 11, fill: "#656d76" },
      fmtTime(items[items.length - 1].scheduled_for)),
    bars);
}

views.run = (el, [id]) => {
  const title = h("h1", {}, `Run #${id}`);
  const fields = h("div");
  const output = h("pre", { class: "output", id: "run-output" });
  const attempts = h("div");
  replace(el, title, fields, h("h2", {}, "Output"), output, h("h2", {}, "Attempts"), attempts);
  return {
    async refresh() {
      const r = await api("GET", `runs/${encodeURIComponent(id)}`);
      const cancel = ACTIVE_STATES.has(r.state)
        ? h("button", { class: "danger", type: "button", onclick: () => act(`cancel requested for run #${r.id}`, () => api("POST", `runs/${r.id}/cancel`)) }, "Cancel")
        : null;
      replace(title, `Run #${r.id}`, badge(r.state), cancel);
      replace(fields, h("dl", { class: "fields" },
        field("Job", r.job_id ? h("a", { href: `#/jobs/${r.job_id}` }, r.job_name || r.job_id) : "—"),
        field("Slot", `${fmtTime(r.scheduled_for)}${r.late ? " (late)" : ""}`),
        field("Trigger", r.trigger),
        field("Attempt", `${r.attempt} of ${r.max_retries + 1}`),
        field("Worker / epoch", `${r.worker_id || "—"} / ${r.epoch ?? "—"}`),
        field("Started / finished", `${fmtTime(r.started_at)} / ${fmtTime(r.finished_at)}`),
        field("Duration", fmtDuration(r.duration_seconds)),
        field("Exit code", r.exit_code ?? "—"),
        field("Error", r.error || "—")));
      output.textContent = (r.output || "") + (r.output_truncated ? "\n[output truncated: the tail is kept]" : "") || "(no output)";
      replace(attempts, table(["Attempt", "State", "Worker", "Epoch", "Started", "Finished", "Exit", "Error"],
        (r.attempts || []).map((a) => h("tr", {},
          h("td", { class: "num" }, a.attempt), h("td", {}, badge(a.state)), h("td", {}, a.worker_id || "—"),
          h("td", { class: "num" }, a.epoch ?? "—"), h("td", {}, fmtTime(a.started_at)),
          h("td", {}, fmtTime(a.finished_at)), h("td", { class: "num" }, a.exit_code ?? "—"),
          h("td", {}, a.error || "")))));
    },
  };
};

views.dags = (el) => {
  const body = h("div", { id: "dags" });
  replace(el, h("h1", {}, "DAGs"), body);
  return {
    async refresh() {
      let page;
      try {
        page = await api("GET", "dags?limit=100");
      } catch (err) {
        if (err.status !== 404) throw err;
        replace(body, h("div", { class: "empty" }, "This controller serves no DAG API (/api/v1/dags)."));
        return;
      }
      if (!page.items.length) {
        replace(body, h("div", { class: "empty" }, "No DAG defined."));
        return;
      }
      replace(body, table(["Namespace", "Name", "Version", "Schedule", "Latest run", "Finished"],
        page.items.map((d) => h("tr", { "data-dag": d.name },
          h("td", {}, d.namespace), h("td", {}, h("a", { href: `#/dags/${d.id}` }, d.name)),
          h("td", { class: "num" }, d.version), h("td", {}, d.schedule ? h("code", {}, d.schedule) : "manual"),
          h("td", {}, d.latest_run ? badge(d.latest_run.state) : "—"),
          h("td", {}, d.latest_run ? timeCell(d.latest_run.finished_at) : "—")))));
    },
  };
};

views.dag = (el, [id, runId]) => {
  const title = h("h1", {}, `DAG ${id}`);
  const graph = h("div", { class: "graph", id: "dag-graph" });
  const detail = h("div", { id: "dag-node" });
  const runs = h("div", { id: "dag-runs" });
  let selected = null;
  replace(el, title, graph, detail, h("h2", {}, "Runs"), runs);
  return {
    async refresh() {
      const dag = await api("GET", `dags/${encodeURIComponent(id)}`);
      const list = await api("GET", `dags/${encodeURIComponent(id)}/runs?limit=20`);
      const chosen = runId || (list.items[0] && list.items[0].id);
      const run = chosen ? await api("GET", `dag-runs/${encodeURIComponent(chosen)}`) : null;
      const runButton = h("button", {
        type: "button", id: "dag-run-now",
        onclick: async () => {
          const made = await act(`started a run of ${dag.name}`, () => api("POST", `dags/${dag.id}/runs`, {}));
          if (made) location.hash = `#/dags/${dag.id}/runs/${made.id}`;
        },
      }, "Run now");
      replace(title, `${dag.namespace}/${dag.name}`, h("span", { class: "muted" }, `v${dag.version}`),
        run ? [h("span", { class: "muted" }, `run #${run.id}`), badge(run.state)] : null, runButton);
      const states = new Map((run ? run.nodes : []).map((n) => [n.job_id, n]));
      replace(graph, dagGraph(dag, states, selected, (jobId) => { selected = jobId; refreshNow(); }));
      const node = selected !== null ? states.get(selected) : null;
      replace(detail, node ? nodeDetail(node) : h("p", { class: "muted" },
        run ? "Click a node for its state and output." : "No run yet: press Run now."));
      replace(runs, list.items.length ? table(["Run", "State", "Trigger", "Created", "Finished"],
        list.items.map((r) => h("tr", { "data-dag-run": r.id },
          h("td", {}, h("a", { href: `#/dags/${dag.id}/runs/${r.id}` }, `#${r.id}`), r.id === chosen ? " (shown)" : ""),
          h("td", {}, badge(r.state)), h("td", {}, r.trigger), h("td", {}, fmtTime(r.created_at)),
          h("td", {}, fmtTime(r.finished_at))))) : h("div", { class: "empty" }, "No runs yet."));
    },
  };
};

function nodeDetail(n) {
  return [h("h2", {}, `${n.name} `, badge(n.state)), h("dl", { class: "fields" },
    field("Attempt", `${n.attempt ?? 0} of ${(n.max_retries ?? 0) + 1}`),
    field("Run", n.run_id ? h("a", { href: `#/runs/${n.run_id}` }, `#${n.run_id}`) : "—"),
    field("Started / finished", `${fmtTime(n.started_at)} / ${fmtTime(n.finished_at)}`),
    field("Exit code", n.exit_code ?? "—"), field("Error", n.error || "—")),
  h("pre", { class: "output" }, n.output || "(no output)")];
}

// Layered drawing: a node's column is its longest path from a root, so edges point right.
function dagGraph(dag, states, selected, onSelect) {
  const jobs = dag.jobs || [];
  if (!jobs.length) return h("div", { class: "empty" }, "This DAG has no jobs.");
  const edges = dag.dependencies || [];
  const parents = new Map(jobs.map((j) => [j.id, []]));
  for (const e of edges) if (parents.has(e.child_job_id)) parents.get(e.child_job_id).push(e.parent_job_id);
  const layer = new Map();
  const depth = (jid, seen = new Set()) => {
    if (layer.has(jid)) return layer.get(jid);
    if (seen.has(jid)) return 0; // a cycle cannot be stored; do not loop if one shows up
    seen.add(jid);
    const ps = parents.get(jid) || [];
    const d = ps.length ? 1 + Math.max(...ps.map((p) => depth(p, seen))) : 0;
    layer.set(jid, d);
    return d;
  };
  jobs.forEach((j) => depth(j.id));
  const columns = [];
  for (const j of [...jobs].sort((a, b) => a.name.localeCompare(b.name))) {
    const d = layer.get(j.id);
    (columns[d] = columns[d] || []).push(j);
  }
  const boxW = 150, boxH = 44, gapX = 70, gapY = 24, pad = 16;
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((j, r) => pos.set(j.id, { x: pad + c * (boxW + gapX), y: pad + r * (boxH + gapY) })));
  const width = pad * 2 + columns.length * (boxW + gapX) - gapX;
  const height = pad * 2 + Math.max(...columns.map((c) => c.length)) * (boxH + gapY) - gapY;
  const lines = edges.filter((e) => pos.has(e.parent_job_id) && pos.has(e.child_job_id)).map((e) => {
    const a = pos.get(e.parent_job_id), b = pos.get(e.child_job_id);
    const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x - 4, y2 = b.y + boxH / 2, mid = (x1 + x2) / 2;
    return s("path", {
      class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, fill: "none", stroke: "#8c959f",
      "stroke-width": 1.5, "stroke-dasharray": e.dependency_type === "order-only" ? "5 4" : null,
      "marker-end": "url(#arrow)", "data-edge": `${e.parent_name}->${e.child_name}`,
    }, s("title", {}, `${e.parent_name} → ${e.child_name} (${e.dependency_type})`));
  });
  const boxes = jobs.map((j) => {
    const p = pos.get(j.id);
    const n = states.get(j.id);
    const state = n ? n.state : "";
    return s("g", {
      class: `node${selected === j.id ? " selected" : ""}`, "data-node": j.name, "data-state": state,
      transform: `translate(${p.x},${p.y})`, onclick: () => onSelect(j.id),
    },
    s("rect", { width: boxW, height: boxH, rx: 8, fill: STATE_FILL[state] || "#ffffff", stroke: "#57606a" }),
    s("text", { x: boxW / 2, y: 18, "text-anchor": "middle", "font-size": 13, "font-weight": 600, fill: state ? "#fff" : "#1f2328" }, j.name),
    s("text", { x: boxW / 2, y: 35, "text-anchor": "middle", "font-size": 11, fill: state ? "#fff" : "#656d76" }, state || "not run"),
    s("title", {}, `${j.name}: ${state || "no run"}`));
  });
  return s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "DAG graph" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
      s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8c959f" }))),
    lines, boxes);
}

views.failovers = (el) => {
  const chart = h("div", { class: "timeline", id: "failover-chart" });
  const body = h("div", { id: "failovers" });
  replace(el, h("h1", {}, "Failover timeline"),
    h("p", { class: "muted" }, "Each leadership (epoch) with the node that claimed it in PostgreSQL; a new epoch is a leader change."),
    chart, h("h2", {}, "Leadership changes"), body);
  return {
    async refresh() {
      const c = await api("GET", "cluster");
      const history = (c.leadership_history || []).slice().sort((a, b) => a.epoch - b.epoch);
      if (!history.length) {
        replace(chart, h("div", { class: "empty" }, "No leader has claimed an epoch yet."));
        replace(body);
        return;
      }
      replace(chart, timelineChart(history));
      const rows = history.map((e, i) => {
        const end = history[i + 1] ? history[i + 1].claimed_at : null;
        const held = ((end ? new Date(end) : new Date()) - new Date(e.claimed_at)) / 1000;
        return h("tr", { "data-epoch": e.epoch },
          h("td", { class: "num" }, e.epoch), h("td", {}, e.node_id), h("td", {}, fmtTime(e.claimed_at)),
          h("td", {}, end ? fmtDuration(held) : `${fmtDuration(held)} (current)`),
          h("td", {}, i ? `${history[i - 1].node_id} → ${e.node_id}` : "first leader"));
      }).reverse();
      replace(body, table(["Epoch", "Leader", "Claimed at", "Held for", "Change"], rows));
    },
  };
};

function timelineChart(history) {
  const width = 1000, height = 96, left = 10, right = 10;
  const start = new Date(history[0].claimed_at).getTime();
  const now = Date.now();
  const span = Math.max(1000, now - start);
  const x = (t) => left + ((width - left - right) * (t - start)) / span;
  const nodes = [...new Set(history.map((e) => e.node_id))].sort();
  const segments = history.map((e, i) => {
    const t0 = new Date(e.claimed_at).getTime();
    const t1 = history[i + 1] ? new Date(history[i + 1].claimed_at).getTime() : now;
    const color = NODE_COLORS[nodes.indexOf(e.node_id) % NODE_COLORS.length];
    const w = Math.max(2, x(t1) - x(t0));
    return s("g", { "data-epoch": e.epoch },
      s("rect", { x: x(t0), y: 24, width: w, height: 30, fill: color, stroke: "#fff" },
        s("title", {}, `epoch ${e.epoch}: ${e.node_id} from ${fmtTime(e.claimed_at)}`)),
      w > 70 ? s("text", { x: x(t0) + 6, y: 44, "font-size": 12, fill: "#fff" }, `${e.node_id} · epoch ${e.epoch}`) : null,
      s("line", { x1: x(t0), x2: x(t0), y1: 16, y2: 62, stroke: "#24292f" }),
      s("text", { x: x(t0), y: 78, "font-size": 11, fill: "#656d76", "text-anchor": i ? "middle" : "start" }, new Date(t0).toLocaleTimeString()));
  });
  return s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "leadership timeline" },
    segments, s("text", { x: width - right, y: 12, "font-size": 11, fill: "#656d76", "text-anchor": "end" }, `now ${new Date(now).toLocaleTimeString()}`));
}

// ----- routing and the refresh loop -----

const ROUTES = [
  [/^#\/cluster$/, "cluster", "cluster"],
  [/^#\/jobs$/, "jobs", "jobs"],
  [/^#\/jobs\/([^/]+)$/, "job", "jobs"],
  [/^#\/runs\/(\d+)$/, "run", "jobs"],
  [/^#\/dags$/, "dags", "dags"],
  [/^#\/dags\/([^/]+)$/, "dag", "dags"],
  [/^#\/dags\/([^/]+)\/runs\/([^/]+)$/, "dag", "dags"],
  [/^#\/failovers$/, "failovers", "failovers"],
];

let current = null;
let generation = 0;
let pending = 0;
let chain = Promise.resolve();

function route() {
  const hash = location.hash || "#/cluster";
  let match = null;
  for (const [pattern, name, nav] of ROUTES) {
    const m = hash.match(pattern);
    if (m) { match = { name, nav, params: m.slice(1).map(decodeURIComponent) }; break; }
  }
  if (!match) { location.hash = "#/cluster"; return; }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === match.nav);
  generation += 1;
  const el = document.getElementById("view");
  current = views[match.name](el, match.params);
  document.body.dataset.view = match.name;
  refreshNow();
}

// Refreshes run one after another; a view replaced meanwhile does not touch the banner.
function refreshNow() {
  pending += 1;
  const run = async () => {
    const mine = generation;
    try {
      await current.refresh();
      if (mine === generation) setBanner(null);
    } catch (err) {
      if (mine === generation) setBanner(err);
    } finally {
      pending -= 1;
      document.body.dataset.refreshed = String(Date.now());
    }
  };
  chain = chain.then(run);
  return chain;
}

async function showServedBy() {
  try {
    const c = await api("GET", "cluster");
    document.getElementById("served-by").textContent = `served by ${c.node.id} (${c.node.role})`;
  } catch (_) {
    // The view's own refresh reports the failure in the banner.
  }
}

function setupToken() {
  const input = document.getElementById("token-input");
  input.value = token();
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    toast(value ? "token saved in this browser" : "token removed");
    refreshNow();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    input.value = "";
    toast("token removed");
    refreshNow();
  });
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  setupToken();
  route();
  showServedBy();
  setInterval(() => { if (!document.hidden && !pending) refreshNow(); }, REFRESH_MS);
  setInterval(showServedBy, 5 * REFRESH_MS);
});
