// roard registry browser: a read-only single-page application over the collector's
// JSON API (api/...). Hash routes:
//   #/runs?name=&label=&host=&since=&until=&limit=   search runs
//   #/run/<run id or name>                           one run
//   #/artifact/<hash, prefix or path>?host=          an artifact and its runs
//   #/lineage/<hash, prefix or path>?dir=&depth=&max_nodes=&host=
//   #/graph/<run>?depth=&max_nodes=                  a run's DAG
// Everything from the registry is inserted as text (paths and argv are untrusted).
"use strict";

(function () {
  // ------------------------------------------------------------------------ helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function query(params) {
    const qs = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (Array.isArray(value)) value.filter(Boolean).forEach((v) => qs.append(key, v));
      else if (value !== undefined && value !== null && value !== "") qs.set(key, value);
    }
    const text = qs.toString();
    return text ? "?" + text : "";
  }

  const link = {
    runs: (params) => "#/runs" + query(params),
    run: (run) => "#/run/" + encodeURIComponent(run),
    artifact: (q, host) => "#/artifact/" + encodeURIComponent(q) + query({ host }),
    lineage: (q, params) => "#/lineage/" + encodeURIComponent(q) + query(params),
    graph: (run, params) => "#/graph/" + encodeURIComponent(run) + query(params),
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const response = await fetch("api/" + path + query(params), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    let doc;
    try {
      doc = await response.json();
    } catch (err) {
      doc = { error: response.statusText || String(err) };
    }
    if (!response.ok) throw new ApiError(response.status, doc.error || response.statusText);
    return doc;
  }

  function shortHash(hash) {
    if (!hash) return "";
    const hex = hash.replace(/^blake3:/, "");
    return hex.slice(0, 12);
  }

  function basename(path) {
    if (!path) return "";
    const parts = path.split("/").filter(Boolean);
    return parts.length ? parts[parts.length - 1] : path;
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function when(iso) {
    if (!iso) return "";
    return iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }

  function duration(start, end) {
    if (!start || !end) return "";
    const seconds = (Date.parse(end) - Date.parse(start)) / 1000;
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function shellQuote(arg) {
    return /^[\w@%+=:,./-]+$/.test(arg) ? arg : "'" + arg.replace(/'/g, "'\\''") + "'";
  }

  function runLabel(run) {
    return run.name || run.run_id;
  }

  function completeness(run) {
    if (run.status === "running") return h("span", { class: "badge info" }, "running");
    return run.complete
      ? h("span", { class: "badge ok" }, "complete")
      : h("span", { class: "badge bad" }, `incomplete: ${run.lost_events} lost events`);
  }

  function hashLink(hash) {
    if (!hash) return h("span", { class: "muted" }, "(no hash)");
    return h("a", { href: link.artifact(hash), title: hash }, h("code", { class: "hash" }, hash));
  }

  function table(headers, rows) {
    return h(
      "table",
      {},
      h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((cells) =>
          h("tr", {}, cells.map((cell, i) => h("td", { class: headers[i].num ? "num" : null }, cell))),
        ),
      ),
    );
  }

  function runsTable(runs) {
    if (!runs.length) return h("p", { class: "muted" }, "No runs.");
    return table(
      [
        { label: "Run" },
        { label: "Run id" },
        { label: "Host" },
        { label: "Started" },
        { label: "Duration", num: true },
        { label: "Exit", num: true },
        { label: "Completeness" },
      ],
      runs.map((r) => [
        h("a", { href: link.run(r.run_id) }, r.name || "(unnamed)"),
        h("a", { href: link.run(r.run_id) }, h("code", {}, r.run_id)),
        r.host,
        when(r.started_at),
        duration(r.started_at, r.ended_at),
        r.exit_code === null || r.exit_code === undefined ? "" : String(r.exit_code),
        completeness(r),
      ]),
    );
  }

  // ------------------------------------------------------------------------ routing

  const main = () => document.getElementById("main");
  let ticket = 0;
  let graph = null;

  function show(...children) {
    const shown = children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);
    main().replaceChildren(...shown);
  }

  function failure(err, hint) {
    const status = err instanceof ApiError ? ` (${err.status})` : "";
    return h("div", { class: "error", role: "alert" }, `${err.message}${status}`, hint ? h("div", {}, hint) : null);
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/runs";
    const mark = raw.indexOf("?");
    const path = mark < 0 ? raw : raw.slice(0, mark);
    const params = new URLSearchParams(mark < 0 ? "" : raw.slice(mark + 1));
    const segments = path.split("/").filter((s) => s !== "");
    const view = segments.shift() || "runs";
    let arg = "";
    try {
      arg = segments.map(decodeURIComponent).join("/");
    } catch (err) {
      arg = segments.join("/");
    }
    // A path typed into the URL keeps its leading slash: #/artifact//data/x.csv
    if ((view === "artifact" || view === "lineage") && /^\/\//.test(path.slice(view.length + 1))) {
      arg = "/" + arg;
    }
    return { view, arg, params };
  }

  async function route() {
    const mine = ++ticket;
    if (graph) {
      graph.destroy();
      graph = null;
      window.roardGraph = null;
    }
    const { view, arg, params } = parseHash();
    const current = () => mine === ticket;
    show(h("p", { class: "loading" }, "Loading…"));
    try {
      if (view === "runs") await runsView(params, current);
      else if (view === "run" && arg) await runView(arg, current);
      else if (view === "artifact" && arg) await artifactView(arg, params, current);
      else if (view === "lineage" && arg) await lineageView(arg, params, current);
      else if (view === "graph" && arg) await graphView(arg, params, current);
      else {
        document.title = "roard registry";
        show(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/runs" }, "List runs")));
      }
    } catch (err) {
      if (!current()) return;
      show(h("h1", {}, "Not available"), failure(err));
    }
  }

  // -------------------------------------------------------------------------- views

  async function runsView(params, current) {
    document.title = "Runs · roard registry";
    const labels = params.getAll("label").filter(Boolean);
    const field = (name, label, value, attrs) =>
      h("label", {}, label, h("input", { name, value: value || "", ...(attrs || {}) }));
    const form = h(
      "form",
      { class: "filters", id: "runs-filter" },
      field("name", "Name", params.get("name")),
      field("label", "Labels (k=v, space separated)", labels.join(" ")),
      field("host", "Host", params.get("host")),
      field("since", "Started since", params.get("since"), { placeholder: "2026-11-26 or …T08:00Z" }),
      field("until", "Started before", params.get("until"), { placeholder: "ISO 8601 time" }),
      field("limit", "Limit", params.get("limit") || "100", { type: "number", min: 1, max: 10000 }),
      h("button", { type: "submit" }, "Search runs"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      location.hash = link.runs({
        name: data.get("name").trim(),
        label: data.get("label").split(/\s+/).filter(Boolean),
        host: data.get("host").trim(),
        since: data.get("since").trim(),
        until: data.get("until").trim(),
        limit: data.get("limit") === "100" ? "" : data.get("limit"),
      });
    });
    show(h("h1", {}, "Runs"), form, h("p", { class: "loading" }, "Loading…"));
    let runs;
    try {
      runs = await api("runs", {
        name: params.get("name"),
        label: labels,
        host: params.get("host"),
        since: params.get("since"),
        until: params.get("until"),
        limit: params.get("limit"),
      });
    } catch (err) {
      if (current()) show(h("h1", {}, "Runs"), form, failure(err));
      return;
    }
    if (!current()) return;
    show(
      h("h1", {}, "Runs"),
      form,
      h("p", { class: "muted" }, `${runs.length} run${runs.length === 1 ? "" : "s"}, newest first.`),
      runsTable(runs),
    );
  }

  function processTree(processes) {
    if (!processes.length) return h("p", { class: "muted" }, "No processes recorded.");
    const pids = new Set(processes.map((p) => p.pid));
    const children = new Map();
    const roots = [];
    for (const p of processes) {
      if (p.ppid !== null && pids.has(p.ppid) && p.ppid !== p.pid) {
        if (!children.has(p.ppid)) children.set(p.ppid, []);
        children.get(p.ppid).push(p);
      } else roots.push(p);
    }
    const seen = new Set();
    const item = (p) => {
      seen.add(p);
      const argv = p.argv && p.argv.length ? p.argv.map(shellQuote).join(" ") : p.exe || "(unknown)";
      const kids = (children.get(p.pid) || []).filter((c) => !seen.has(c));
      const exit = p.exit_code === null || p.exit_code === undefined ? "" : `exit ${p.exit_code}`;
      return h(
        "li",
        {},
        h(
          "div",
          { class: "proc" },
          h("div", {}, h("strong", {}, `pid ${p.pid}`), " ", h("code", { class: "argv" }, argv)),
          h(
            "div",
            { class: "muted" },
            [
              p.exe ? `exe ${p.exe}` : null,
              p.cwd ? `cwd ${p.cwd}` : null,
              exit || null,
              p.started_at ? `started ${when(p.started_at)}` : null,
              p.ended_at ? `ran ${duration(p.started_at, p.ended_at)}` : null,
            ]
              .filter(Boolean)
              .join(" · "),
          ),
        ),
        kids.length ? h("ul", {}, kids.map(item)) : null,
      );
    };
    return h("ul", { class: "tree", id: "process-tree" }, roots.map(item));
  }

  function filesSection(title, files, extra) {
    // The user's own files (data and code) first; system and package files folded away.
    const mine = (f) => f.kind === "artifact" || f.kind === "code";
    const artifacts = files.filter(mine);
    const others = files.filter((f) => !mine(f));
    const headers = [
      { label: "Path" },
      { label: "Hash" },
      { label: "Size", num: true },
      { label: extra.label, num: true },
      { label: "Kind" },
    ];
    const rows = (list) =>
      list.map((f) => [
        h("code", {}, f.path),
        hashLink(f.hash),
        h("span", { title: `${f.size} bytes` }, size(f.size)),
        extra.value(f),
        f.kind,
      ]);
    return [
      h("h2", {}, `${title} (${artifacts.length})`),
      artifacts.length ? table(headers, rows(artifacts)) : h("p", { class: "muted" }, "None."),
      others.length
        ? h(
            "details",
            {},
            h("summary", {}, `${others.length} system and package files`),
            table(headers, rows(others)),
          )
        : null,
    ];
  }

  // The W&B / MLflow / Neptune runs a run belongs to; a link only to an http(s) page.
  function trackerLinks(links) {
    if (!links.length) return h("span", { class: "muted" }, "none");
    return links.map((l, i) => {
      const text = `${l.tracker} ${l.run_id}${l.project ? ` (${l.project})` : ""}`;
      const web = /^https?:\/\//.test(l.url || "");
      return [
        i ? ", " : "",
        web ? h("a", { href: l.url, rel: "noopener noreferrer", class: "tracker-link" }, text) : text,
      ];
    });
  }

  async function runView(run, current) {
    const doc = await api("runs/" + encodeURIComponent(run));
    if (!current()) return;
    document.title = `${runLabel(doc)} · roard registry`;
    const labels = Object.entries(doc.labels || {});
    const facts = [
      ["Run id", h("code", {}, doc.run_id)],
      ["Name", doc.name || h("span", { class: "muted" }, "(unnamed)")],
      ["Host", doc.host],
      ["Status", doc.status],
      ["Exit code", doc.exit_code === null ? "" : String(doc.exit_code)],
      ["Started", when(doc.started_at)],
      ["Ended", when(doc.ended_at)],
      ["Duration", duration(doc.started_at, doc.ended_at)],
      ["Completeness", completeness(doc)],
      ["Lost events", String(doc.lost_events)],
      ["Tagged", [doc.how || "", doc.root_pid ? ` (root pid ${doc.root_pid})` : ""].join("")],
      [
        "Labels",
        labels.length
          ? labels.map(([k, v], i) => [i ? ", " : "", h("a", { href: link.runs({ label: `${k}=${v}` }) }, `${k}=${v}`)])
          : h("span", { class: "muted" }, "none"),
      ],
      ["Tracker runs", trackerLinks(doc.links || [])],
    ];
    const reasons = doc.loss_reasons || [];
    const changes = doc.path_changes || [];
    show(
      h("h1", {}, runLabel(doc), h("code", {}, doc.run_id), completeness(doc)),
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button", href: link.graph(doc.run_id), id: "open-graph" }, "Lineage graph"),
        doc.name
          ? h("a", { class: "button secondary", href: link.runs({ name: doc.name }) }, `All runs named ${doc.name}`)
          : null,
      ),
      h(
        "div",
        { class: "card" },
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      ),
      reasons.length
        ? h("div", { class: "note" }, h("strong", {}, "Why incomplete: "), h("ul", {}, reasons.map((r) => h("li", {}, r))))
        : null,
      h("h2", {}, `Processes (${doc.processes.length})`),
      processTree(doc.processes),
      filesSection("Inputs", doc.inputs, { label: "Read", value: (f) => size(f.bytes_read) }),
      filesSection("Outputs", doc.outputs, {
        label: "Written",
        value: (f) => size(f.bytes_written) + (f.read_too ? " (read too)" : ""),
      }),
      doc.deleted && doc.deleted.length
        ? [
            h("h2", {}, `Deleted before the end (${doc.deleted.length})`),
            table(
              [{ label: "Path" }, { label: "Written", num: true }, { label: "Kind" }],
              doc.deleted.map((f) => [h("code", {}, f.path), size(f.bytes_written), f.kind]),
            ),
          ]
        : null,
      changes.length
        ? [
            h("h2", {}, `Renames and removals (${changes.length})`),
            table(
              [{ label: "Operation" }, { label: "Path" }, { label: "New path" }, { label: "Pid", num: true }, { label: "At" }],
              changes.map((c) => [c.op, h("code", {}, c.path), c.new_path ? h("code", {}, c.new_path) : "", String(c.pid), when(c.at)]),
            ),
          ]
        : null,
    );
  }

  async function artifactView(q, params, current) {
    const host = params.get("host") || "";
    const doc = await api("artifacts", { q, host });
    if (!current()) return;
    document.title = `${q} · roard registry`;
    const cards = doc.artifacts.map((a) =>
      h(
        "section",
        { class: "card artifact" },
        h("h2", {}, "Artifact ", h("code", { class: "hash" }, a.hash)),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Size"),
          h("dd", {}, a.size === null ? "" : `${size(a.size)} (${a.size} bytes)`),
          h("dt", {}, "Kind"),
          h("dd", {}, a.kind || ""),
          h("dt", {}, "Where it lives"),
          h(
            "dd",
            {},
            a.paths.length
              ? h("ul", {}, a.paths.map((p) => h("li", {}, h("span", { class: "muted" }, p.host ? `${p.host}: ` : ""), h("code", {}, p.path))))
              : h("span", { class: "muted" }, "no visible path"),
          ),
        ),
        h(
          "div",
          { class: "actions" },
          h("a", { class: "button", href: link.lineage(a.hash, { dir: "both" }), id: "open-lineage" }, "Lineage graph"),
          h("a", { class: "button secondary", href: link.lineage(a.hash, { dir: "up" }) }, "Upstream only"),
          h("a", { class: "button secondary", href: link.lineage(a.hash, { dir: "down" }) }, "Downstream only"),
        ),
        h("h3", {}, `Produced by (${a.produced_by.length})`),
        a.produced_by.length ? runsTable(a.produced_by) : h("p", { class: "muted" }, "No recorded run wrote this content (it came from outside)."),
        h("h3", {}, `Consumed by (${a.consumed_by.length})`),
        a.consumed_by.length ? runsTable(a.consumed_by) : h("p", { class: "muted" }, "No recorded run read this content."),
        a.hidden_runs ? h("p", { class: "note" }, `${a.hidden_runs} more runs are not visible.`) : null,
      ),
    );
    show(
      h("h1", {}, doc.artifacts.length === 1 ? "Artifact" : `${doc.artifacts.length} artifacts match`, h("code", {}, q)),
      doc.artifacts.length > 1
        ? h("p", { class: "note" }, "Several contents match (a path that changed, or a short prefix): newest first.")
        : null,
      cards,
    );
  }

  function intParam(params, name) {
    const value = params.get(name);
    return value && /^\d+$/.test(value) ? value : "";
  }

  function graphControls(params, withDirection, onSubmit) {
    const form = h(
      "form",
      { class: "filters", id: "graph-controls" },
      withDirection
        ? h(
            "label",
            {},
            "Direction",
            h(
              "select",
              { name: "dir" },
              [
                ["both", "upstream and downstream"],
                ["up", "upstream (what produced it)"],
                ["down", "downstream (what used it)"],
              ].map(([v, t]) => h("option", { value: v, selected: (params.get("dir") || "both") === v }, t)),
            ),
          )
        : null,
      h("label", {}, "Depth (run levels)", h("input", { name: "depth", type: "number", min: 1, max: 50, value: intParam(params, "depth") || "5" })),
      h("label", {}, "Max nodes", h("input", { name: "max_nodes", type: "number", min: 1, max: 20000, value: intParam(params, "max_nodes") || "500" })),
      h("button", { type: "submit" }, "Redraw"),
      h("button", { type: "button", class: "button secondary", id: "graph-fit" }, "Fit"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      onSubmit({
        dir: withDirection ? data.get("dir") : undefined,
        depth: data.get("depth"),
        max_nodes: data.get("max_nodes") === "500" ? "" : data.get("max_nodes"),
        host: params.get("host") || undefined,
      });
    });
    return form;
  }

  async function lineageView(q, params, current) {
    const dir = params.get("dir") || "both";
    const doc = await api("lineage", {
      q,
      dir,
      depth: intParam(params, "depth"),
      max_nodes: intParam(params, "max_nodes"),
      host: params.get("host"),
    });
    if (!current()) return;
    document.title = `Lineage of ${q} · roard registry`;
    const controls = graphControls(params, true, (p) => (location.hash = link.lineage(q, p)));
    const title = h("h1", {}, "Lineage", h("a", { href: link.artifact(doc.root.hash) }, h("code", {}, doc.root.hash)));
    const others = doc.other_matches || [];
    const extra = others.length
      ? h("p", { class: "note" }, `The query matched ${others.length} other contents: `, others.map((o, i) => [i ? ", " : "", h("a", { href: link.lineage(o, { dir }) }, shortHash(o))]))
      : null;
    renderGraphPage(title, controls, extra, doc);
  }

  async function graphView(run, params, current) {
    const doc = await api("graph/" + encodeURIComponent(run), {
      depth: intParam(params, "depth"),
      max_nodes: intParam(params, "max_nodes"),
    });
    if (!current()) return;
    const root = doc.runs.find((r) => r.run_id === doc.root.run_id);
    const name = root ? runLabel(root) : doc.root.run_id;
    document.title = `Graph of ${name} · roard registry`;
    const controls = graphControls(params, false, (p) => (location.hash = link.graph(run, p)));
    const title = h("h1", {}, "Lineage of run", h("a", { href: link.run(doc.root.run_id) }, name), h("code", {}, doc.root.run_id));
    renderGraphPage(title, controls, null, doc);
  }

  // -------------------------------------------------------------------------- graph

  function renderGraphPage(title, controls, extra, doc) {
    const notes = [];
    if (doc.truncated) {
      notes.push(h("p", { class: "note", id: "truncated-note" }, "Truncated: the graph reached its node limit; raise Max nodes or lower Depth to see all of it."));
    }
    if (doc.hidden_runs) {
      notes.push(h("p", { class: "note" }, `${doc.hidden_runs} runs are hidden (not visible to you).`));
    }
    const container = h("div", { id: "graph", role: "img", "aria-label": "lineage graph; the same nodes are listed beside it" });
    const info = h("div", { id: "node-info", class: "muted" }, "Click a node to open it; hover for details. Scroll to zoom, drag to pan.");
    const runItems = doc.runs.map((r) =>
      h("li", {}, h("a", { href: link.run(r.run_id), "data-node": "run:" + r.run_id, title: r.run_id }, runLabel(r)), r.complete ? "" : " ⚠"),
    );
    const artifactItems = doc.artifacts.map((a) =>
      h("li", {}, h("a", { href: link.artifact(a.hash), "data-node": "artifact:" + a.hash, title: a.hash }, basename(a.paths[0]) || shortHash(a.hash)), " ", h("code", { class: "muted" }, shortHash(a.hash))),
    );
    const side = h(
      "aside",
      { class: "graph-side", id: "graph-nodes" },
      info,
      h("h3", {}, `Runs (${doc.runs.length})`),
      h("ul", { id: "graph-runs" }, runItems),
      h("h3", {}, `Artifacts (${doc.artifacts.length})`),
      h("ul", { id: "graph-artifacts" }, artifactItems),
    );
    const legend = h(
      "div",
      { class: "legend" },
      h("span", {}, h("span", { class: "swatch run" }), "run"),
      h("span", {}, h("span", { class: "swatch incomplete" }), "incomplete run"),
      h("span", {}, h("span", { class: "swatch artifact" }), "artifact (file content)"),
      h("span", {}, h("span", { class: "swatch used" }), "used (input)"),
      h("span", {}, h("span", { class: "swatch generated" }), "generated (output)"),
      h("span", {}, `${doc.runs.length + doc.artifacts.length} nodes, ${doc.edges.length} edges, depth ${doc.depth}`),
    );
    show(title, controls, extra, notes, legend, h("div", { class: "graph-wrap" }, container, side));
    drawGraph(container, info, doc);
    const fit = document.getElementById("graph-fit");
    if (fit) fit.addEventListener("click", () => graph && graph.fit(undefined, 20));
  }

  function drawGraph(container, info, doc) {
    if (typeof window.cytoscape !== "function") {
      container.replaceChildren(h("p", { class: "error" }, "The graph library did not load; the nodes are listed beside."));
      return;
    }
    const rootId = doc.root.type === "run" ? "run:" + doc.root.run_id : "artifact:" + doc.root.hash;
    const elements = [];
    const ids = new Set();
    for (const r of doc.runs) {
      const id = "run:" + r.run_id;
      ids.add(id);
      const label = runLabel(r);
      elements.push({
        group: "nodes",
        data: { id, label: label.length > 24 ? label.slice(0, 23) + "…" : label, href: link.run(r.run_id), run: r },
        classes: ["run", r.complete ? "" : "incomplete", id === rootId ? "root" : ""].join(" ").trim(),
      });
    }
    for (const a of doc.artifacts) {
      const id = "artifact:" + a.hash;
      ids.add(id);
      let name = basename(a.paths[0]) || "(unnamed)";
      if (name.length > 24) name = name.slice(0, 23) + "…";
      elements.push({
        group: "nodes",
        data: { id, label: `${name}\n${shortHash(a.hash)}`, href: link.artifact(a.hash), artifact: a },
        classes: ["artifact", id === rootId ? "root" : ""].join(" ").trim(),
      });
    }
    doc.edges.forEach((e, i) => {
      const source = e.kind === "used" ? "artifact:" + e.from : "run:" + e.from;
      const target = e.kind === "used" ? "run:" + e.to : "artifact:" + e.to;
      if (ids.has(source) && ids.has(target)) {
        elements.push({ group: "edges", data: { id: "e" + i, source, target }, classes: e.kind });
      }
    });
    const many = ids.size > 150;
    graph = window.cytoscape({
      container,
      elements,
      minZoom: 0.05,
      maxZoom: 3,
      boxSelectionEnabled: false,
      autoungrabify: true,
      style: [
        {
          selector: "node",
          style: {
            label: "data(label)",
            "font-size": 11,
            "text-wrap": "wrap",
            "text-max-width": 150,
            "text-valign": "center",
            "text-halign": "center",
            color: "#1a202c",
            width: 160,
            height: 38,
            "min-zoomed-font-size": 7,
          },
        },
        {
          selector: "node.run",
          style: { shape: "round-rectangle", "background-color": "#cfe3ff", "border-color": "#1f5fbf", "border-width": 2, "font-weight": "bold" },
        },
        {
          selector: "node.artifact",
          style: { shape: "ellipse", "background-color": "#fff1c9", "border-color": "#b7791f", "border-width": 1.5, height: 44 },
        },
        { selector: "node.incomplete", style: { "border-color": "#c53030", "border-style": "dashed", "border-width": 3 } },
        { selector: "node.root", style: { "border-width": 5, "border-color": "#172337", "underlay-color": "#f6ad55", "underlay-opacity": 0.35, "underlay-padding": 6 } },
        { selector: "node.hover", style: { "overlay-color": "#1f5fbf", "overlay-opacity": 0.12 } },
        {
          selector: "edge",
          style: {
            width: 1.5,
            "curve-style": many ? "haystack" : "bezier",
            "target-arrow-shape": many ? "none" : "triangle",
            "arrow-scale": 0.9,
            "line-color": "#8a94a6",
            "target-arrow-color": "#8a94a6",
          },
        },
        { selector: "edge.generated", style: { "line-color": "#2f855a", "target-arrow-color": "#2f855a" } },
      ],
      layout: { name: "dagre", rankDir: "LR", nodeSep: 14, rankSep: 70, edgeSep: 8, fit: true, padding: 20, animate: false },
    });
    window.roardGraph = graph;
    // A big graph fitted whole is too small to read: start around the root, readable.
    const readable = 0.6;
    if (graph.zoom() < readable) {
      const root = graph.getElementById(rootId);
      graph.zoom(readable);
      graph.center(root.nonempty() ? root : undefined);
      info.replaceChildren(
        `Showing the graph around its root (${ids.size} nodes in all): press Fit for all of it. `,
        "Click a node to open it; scroll to zoom, drag to pan.",
      );
    }
    graph.on("tap", "node", (event) => {
      location.hash = event.target.data("href");
    });
    graph.on("mouseover", "node", (event) => {
      const node = event.target;
      node.addClass("hover");
      container.style.cursor = "pointer";
      info.replaceChildren(...nodeInfo(node.data()));
    });
    graph.on("mouseout", "node", (event) => {
      event.target.removeClass("hover");
      container.style.cursor = "";
    });
    container.setAttribute("data-ready", "true");
  }

  function nodeInfo(data) {
    if (data.run) {
      const r = data.run;
      return [
        h("strong", {}, "Run "),
        runLabel(r),
        h("br"),
        h("code", {}, r.run_id),
        h("br"),
        `${r.host} · ${when(r.started_at)} · ${duration(r.started_at, r.ended_at)}`,
        h("br"),
        r.complete ? "complete" : `incomplete (${r.lost_events} lost events)`,
      ];
    }
    const a = data.artifact;
    return [
      h("strong", {}, "Artifact "),
      h("code", { class: "hash" }, a.hash),
      h("br"),
      a.size === null ? "" : size(a.size),
      a.paths.map((p) => [h("br"), h("code", {}, p)]),
    ];
  }

  // ------------------------------------------------------------------------- search

  async function search(q, host) {
    const text = q.trim();
    if (!text) return;
    if (text.startsWith("/")) {
      location.hash = link.artifact(text, host);
      return;
    }
    if (/^(blake3:)?[0-9a-f]{6,}$/i.test(text)) {
      try {
        await api("artifacts", { q: text, host });
        location.hash = link.artifact(text, host);
        return;
      } catch (err) {
        // Not a known hash: perhaps a run id (16 hex digits).
        try {
          await api("runs/" + encodeURIComponent(text));
          location.hash = link.run(text);
        } catch (again) {
          location.hash = link.artifact(text, host);
        }
        return;
      }
    }
    location.hash = link.run(text);
  }

  function start() {
    const url = new URL(location.href);
    if (url.searchParams.has("token")) {
      // The token became a cookie: keep it out of the address bar and history.
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    const form = document.getElementById("search");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      search(document.getElementById("search-q").value, document.getElementById("search-host").value.trim());
    });
    window.addEventListener("hashchange", route);
    route();
  }

  start();
})();
