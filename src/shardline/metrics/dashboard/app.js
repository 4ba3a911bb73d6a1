// shardline dashboard: fetches the JSON API of the server it is served from and draws plain SVG. No dependencies.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  // Chart range (s) -> query period (s): about 180 points per chart; periods above a minute fall on the 1-min tier.
  const PERIODS = { 900: 5, 3600: 20, 21600: 120, 86400: 480 };
  const RANGE_NAMES = { 900: "15 min", 3600: "1 h", 21600: "6 h", 86400: "24 h" };
  const COLORS = ["var(--s1)", "var(--s2)", "var(--s3)", "var(--s4)", "var(--s5)", "var(--s6)"];
  // Outcomes keep their colour whichever of them have data.
  const NAMED = { success: "var(--s3)", error: "var(--s4)", timeout: "var(--s2)", throttled: "var(--s5)",
    write: "var(--s4)", read: "var(--s2)", p50: "var(--s1)", p99: "var(--s5)" };
  const colorOf = (name, i) => NAMED[name] || COLORS[i % COLORS.length];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_HASH = (1n << 128n) - 1n;

  const state = { range: 900, busy: false, again: false, timer: null, open: new Set() };

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const node = svg ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function facts(pairs, cls = "facts") {
    return el("dl", { class: cls }, pairs.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", {}, v))));
  }

  const BAD = ["ALARM", "STALL", "STOP", "DELETING", "FAILED", "RETRYATTEMPTSEXHAUSTED", "RECORDAGEEXCEEDED"];

  function badge(text) {
    const t = String(text ?? "—");
    const u = t.toUpperCase();
    let cls = "badge";
    if (["OK", "ENABLED", "ACTIVE", "OPEN"].includes(u)) cls += " ok";
    else if (BAD.includes(u)) cls += " bad";
    else if (["INSUFFICIENT_DATA", "CREATING", "UPDATING", "ENABLING", "DISABLING"].includes(u)) cls += " warn";
    return el("span", { class: cls, text: t });
  }

  // <details> that stay open across refreshes.
  function details(key, summary, body) {
    const d = el("details", { "data-key": key, open: state.open.has(key) }, el("summary", { text: summary }), body);
    d.addEventListener("toggle", () => (d.open ? state.open.add(key) : state.open.delete(key)));
    return d;
  }

  function table(caption, columns, rows, empty) {
    if (!rows.length) return el("p", { class: "empty", text: empty });
    const head = el("tr", {},
      columns.map(([name, num]) => el("th", { scope: "col", class: num ? "num" : null, text: name })));
    const body = rows.map((cells) =>
      el("tr", {}, cells.map((c, i) => el("td", { class: columns[i][1] ? "num" : null }, c))),
    );
    return el("div", { class: "table-wrap" }, el("table", {}, el("caption", { class: "sr-only", text: caption }),
      el("thead", {}, head), el("tbody", {}, body)));
  }

  // ------------------------------------------------------------------ formatting
  function fmtNum(v, digits = 3) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toPrecision(digits) + "G";
    if (a >= 1e6) return (v / 1e6).toPrecision(digits) + "M";
    if (a >= 1e4) return (v / 1e3).toPrecision(digits) + "k";
    if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
    return String(Number(v.toPrecision(digits)));
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 10) return `${Number(ms.toPrecision(2))} ms`;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${Number(s.toPrecision(3))} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.round((s % 86400) / 3600)}h`;
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return `${fmtNum(b)} ${units[i]}`;
  }

  const fmtTime = (ms) =>
    new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const fmtAgo = (ms, now) => (ms ? `${fmtMs(Math.max(0, now - ms))} ago` : "never");
  const UNITS = {
    count: fmtNum,
    rate: (v) => `${fmtNum(v)}/s`,
    seconds: (v) => (v === null ? "—" : fmtMs(v * 1000)),
    bytes: fmtBytes,
    byterate: (v) => `${fmtBytes(v)}/s`,
  };
  // Axis ticks leave out the "/s": the caption's latest value carries the unit.
  const AXIS_UNITS = { ...UNITS, rate: fmtNum, byterate: fmtBytes };

  // ------------------------------------------------------------------ API
  // A protected server wants its monitoring token as a bearer token. The page takes it from a #token=... link (the
  // fragment never reaches the server or its logs) or from the form shown after a 401, and keeps it for the tab.
  const TOKEN_KEY = "shardline.monitoringToken";

  class NeedsToken extends Error {}

  async function getJSON(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(path, { cache: "no-store", headers });
    if (resp.status === 401) {
      const why = await resp.json().then((b) => b.error, () => "");
      throw new NeedsToken(why || "monitoring needs a token");
    }
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp.json();
  }

  function takeTokenFromLink() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  // One request per metric for every stream/function at once; series are then grouped by one label, summing (or
  // taking the maximum over) the other labels, e.g. shards of a stream or outcomes of a function.
  async function query(name, stat, { by, split, combine = "sum" } = {}) {
    const period = PERIODS[state.range];
    const params = new URLSearchParams({ name, stat, start: String(-state.range), period: String(period) });
    const data = await getJSON(`/api/query?${params}`);
    const groups = new Map();
    for (const s of data.series || []) {
      const key = JSON.stringify([s.labels?.[by] ?? "", split ? s.labels?.[split] ?? "" : ""]);
      if (!groups.has(key)) groups.set(key, new Map());
      const acc = groups.get(key);
      for (const [t, v] of s.points || []) {
        const prev = acc.get(t);
        if (v === null || v === undefined) { if (!acc.has(t)) acc.set(t, null); continue; }
        if (prev === null || prev === undefined) acc.set(t, v);
        else acc.set(t, combine === "max" ? Math.max(prev, v) : prev + v);
      }
    }
    // -> Map(byValue -> [{name: splitValue, points}])
    const out = new Map();
    for (const [key, acc] of groups) {
      const [who, part] = JSON.parse(key);
      const points = [...acc.entries()].sort((a, b) => a[0] - b[0]);
      if (!out.has(who)) out.set(who, []);
      out.get(who).push({ name: part || name, points });
    }
    for (const list of out.values()) list.sort((a, b) => a.name.localeCompare(b.name));
    return out;
  }

  async function queryAll(specs) {
    const entries = await Promise.all(
      Object.entries(specs).map(async ([key, [name, stat, opts]]) => {
        try { return [key, await query(name, stat, opts)]; } catch { return [key, new Map()]; }
      }),
    );
    return Object.fromEntries(entries);
  }

  const CHART_QUERIES = {
    incoming: ["shardline_stream_incoming_records_total", "Rate", { by: "stream" }],
    outgoing: ["shardline_stream_outgoing_records_total", "Rate", { by: "stream" }],
    inBytes: ["shardline_stream_incoming_bytes_total", "Rate", { by: "stream" }],
    streamAge: ["shardline_stream_iterator_age_seconds", "Maximum", { by: "stream", combine: "max" }],
    writeThrottled: ["shardline_stream_write_throttled_total", "Sum", { by: "stream" }],
    readThrottled: ["shardline_stream_read_throttled_total", "Sum", { by: "stream" }],
    invocations: ["shardline_function_invocations_total", "Sum", { by: "function", split: "outcome" }],
    durationP50: ["shardline_function_duration_seconds", "p50", { by: "function", combine: "max" }],
    durationP99: ["shardline_function_duration_seconds", "p99", { by: "function", combine: "max" }],
    concurrency: ["shardline_function_concurrent_executions", "Maximum", { by: "function", combine: "max" }],
    esmAge: ["shardline_esm_iterator_age_seconds", "Maximum", { by: "function", split: "stream", combine: "max" }],
    esmLag: ["shardline_esm_lag_records", "Maximum", { by: "function", split: "stream" }],
  };

  // ------------------------------------------------------------------ charts
  const W = 260, H = 130, L = 40, R = 6, T = 6, B = 18;

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function chart({ title, unit, series, start, end, key }) {
    const fmt = UNITS[unit] || fmtNum;
    const tick = AXIS_UNITS[unit] || fmtNum;
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    const top = niceMax(Math.max(0, ...all.map((p) => p[1])));
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-chart": key });

    for (let i = 0; i <= 3; i++) {
      const v = (top * i) / 3;
      svg.append(el("svg:line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        el("svg:text", { class: "axis", x: L - 5, y: y(v) + 3, "text-anchor": "end", text: tick(v) }));
    }
    for (let i = 0; i <= 2; i++) {
      const t = start + ((end - start) * i) / 2;
      const anchor = ["start", "middle", "end"][i];
      svg.append(el("svg:text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchor, text: fmtClock(t) }));
    }

    // The caption's figure: the latest value, summed over series that add up (outcomes), else the worst (ages).
    const lasts = [];
    series.forEach((s, i) => {
      const color = colorOf(s.name, i);
      const runs = [];
      let run = [];
      for (const [t, v] of s.points) {
        if (v === null || t < start) { if (run.length) runs.push(run); run = []; } else run.push([x(t), y(v)]);
      }
      if (run.length) runs.push(run);
      const n = runs.reduce((a, r) => a + r.length, 0);
      if (!n) return;
      const lines = runs.map((r) => "M" + r.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join("L"));
      if (series.length === 1) {
        const base = y(0).toFixed(1);
        const area = runs.map((r, j) => `M${r[0][0].toFixed(1)},${base}L` + lines[j].slice(1) +
          `L${r[r.length - 1][0].toFixed(1)},${base}Z`);
        svg.append(el("svg:path", { class: "area", d: area.join(""), fill: color }));
      }
      svg.append(el("svg:path", { class: "series", d: lines.join(""), stroke: color, "data-series": s.name,
        "data-points": n }));
      // A lone sample has no line: mark every run's last point so it stays visible.
      for (const r of runs) {
        const [px, py] = r[r.length - 1];
        svg.append(el("svg:circle", { class: "point", cx: px.toFixed(1), cy: py.toFixed(1), r: 2.2, fill: color }));
      }
      lasts.push(s.points.filter((p) => p[1] !== null).at(-1)[1]);
    });
    if (!all.length) {
      svg.append(el("svg:text", { class: "nodata", x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle",
        text: "No data in this range" }));
    }
    const peak = all.length ? Math.max(...all.map((p) => p[1])) : null;
    svg.setAttribute("aria-label", `${title}, last ${RANGE_NAMES[state.range]}: ` +
      (all.length ? `peak ${fmt(peak)}` : "no data"));

    const tip = el("div", { class: "tip", hidden: true });
    const cursor = el("svg:line", { class: "cursor", y1: T, y2: H - B, visibility: "hidden" });
    svg.append(cursor);
    svg.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const t = start + (((ev.clientX - box.left) / box.width) * W - L) / (W - L - R) * (end - start);
      const lines = [];
      let at = null;
      for (const s of series) {
        let best = null;
        for (const p of s.points) if (best === null || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
        if (best) { at = best[0]; lines.push(`${series.length > 1 ? s.name + ": " : ""}${fmt(best[1])}`); }
      }
      if (at === null) return;
      cursor.setAttribute("x1", x(at)); cursor.setAttribute("x2", x(at)); cursor.setAttribute("visibility", "visible");
      tip.textContent = `${fmtTime(at)}  ${lines.join("  ")}`;
      tip.hidden = false;
      tip.style.left = `${Math.min(ev.clientX - box.left + 10, box.width - tip.offsetWidth)}px`;
      tip.style.top = "1.2rem";
    });
    svg.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); });

    const legend = series.length > 1
      ? el("ul", { class: "legend" },
        series.map((s, i) => el("li", { style: `--c:${colorOf(s.name, i)}`, text: s.name })))
      : null;
    const latest = !lasts.length ? "" : fmt(unit === "seconds" ? Math.max(...lasts) : lasts.reduce((a, b) => a + b, 0));
    return el("figure", { class: "chart" },
      el("figcaption", {}, el("span", { text: title }), el("span", { class: "latest", text: latest })),
      svg, tip, legend);
  }

  // spec: [title, unit, [query key, series name (or null: the split label)], ...]
  function chartsFor(who, specs, data, start, end) {
    return el("div", { class: "charts" }, specs.map(([title, unit, ...parts]) => {
      const series = parts.flatMap(([key, name]) =>
        (data[key]?.get(who) || []).map((s) => (name ? { ...s, name } : s)));
      return chart({ title, unit, series, start, end, key: parts.map((p) => p[0]).join("+") });
    }));
  }

  // ------------------------------------------------------------------ shard map
  const hashFrac = (k) => Number((BigInt(k) * 100000n) / MAX_HASH) / 100000;

  function shardMap(stream, shards) {
    if (!shards.length) return el("p", { class: "empty", text: "No shards." });
    const byId = new Map(shards.map((s) => [s.shard_id, s]));
    const depth = new Map();
    const depthOf = (s) => {
      if (depth.has(s.shard_id)) return depth.get(s.shard_id);
      depth.set(s.shard_id, 0);
      const parents = [s.parent_shard_id, s.adjacent_parent_shard_id].filter((p) => p && byId.has(p));
      const d = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(byId.get(p)))) : 0;
      depth.set(s.shard_id, d);
      return d;
    };
    shards.forEach(depthOf);
    const rows = 1 + Math.max(...depth.values());
    const VW = 1400, rowH = 22, gap = 16, top = 4, left = 4, width = VW - 8;
    const height = top + rows * rowH + (rows - 1) * gap + 18;
    const svg = el("svg:svg", { viewBox: `0 0 ${VW} ${height}`, role: "img", "data-shardmap": stream,
      "aria-label": `Shard map of ${stream}: ${shards.filter(isOpen).length} open and ` +
        `${shards.filter((s) => !isOpen(s)).length} closed shards across the hash key range` });
    const geom = new Map();
    for (const s of shards) {
      const a = hashFrac(s.starting_hash_key), b = hashFrac(s.ending_hash_key);
      const d = depth.get(s.shard_id);
      geom.set(s.shard_id, { x: left + a * width, w: Math.max(2, (b - a) * width), y: top + d * (rowH + gap) });
    }
    for (const s of shards) {
      const g = geom.get(s.shard_id);
      for (const p of [s.parent_shard_id, s.adjacent_parent_shard_id]) {
        const pg = p && geom.get(p);
        if (!pg) continue;
        const x1 = pg.x + pg.w / 2, y1 = pg.y + rowH, x2 = g.x + g.w / 2, y2 = g.y, my = (y1 + y2) / 2;
        svg.append(el("svg:path", { class: "link", d: `M${x1},${y1}C${x1},${my} ${x2},${my} ${x2},${y2}` }));
      }
    }
    for (const s of shards) {
      const g = geom.get(s.shard_id);
      const label = s.shard_id.replace(/^shardId-0*(?=\d)/, "#");
      const node = el("svg:g", { class: `shard ${shardState(s)}`, "data-shard": s.shard_id },
        el("svg:title", { text: shardTitle(s) }),
        el("svg:rect", { x: g.x, y: g.y, width: g.w, height: rowH, rx: 3 }),
        g.w > 30 ? el("svg:text", { x: g.x + 5, y: g.y + rowH / 2 + 3.5, text: label }) : null);
      svg.append(node);
    }
    const ry = height - 4;
    svg.append(el("svg:text", { class: "ruler", x: left, y: ry, text: "hash key 0" }),
      el("svg:text", { class: "ruler", x: left + width / 2, y: ry, "text-anchor": "middle", text: "2¹²⁷" }),
      el("svg:text", { class: "ruler", x: left + width, y: ry, "text-anchor": "end", text: "2¹²⁸−1" }));

    const list = table(`Shards of ${stream}`,
      [["Shard"], ["State"], ["Parent"], ["Adjacent parent"], ["Hash range"], ["Sequence range"]],
      shards.map((s) => [
        el("code", { text: s.shard_id }), badge(shardState(s)),
        s.parent_shard_id || "—", s.adjacent_parent_shard_id || "—",
        el("code", { class: "mono", text: `${pct(s.starting_hash_key)} – ${pct(s.ending_hash_key)}` }),
        el("code", { text: `${s.starting_sequence_number ?? "?"} – ${s.ending_sequence_number ?? "open"}` }),
      ]), "");
    return el("div", { class: "shardmap" }, el("h3", { class: "sr-only", text: `Shard map of ${stream}` }), svg,
      details(`shards:${stream}`, "Shard table", list));
  }

  const shardState = (s) => s.state || (s.ending_sequence_number ? "closed" : "open");
  const isOpen = (s) => shardState(s) === "open";
  const pct = (k) => `${(hashFrac(k) * 100).toFixed(1)}%`;
  const shardTitle = (s) => `${s.shard_id} (${shardState(s)})\nhash ${pct(s.starting_hash_key)}–` +
    `${pct(s.ending_hash_key)}` + (s.parent_shard_id ? `\nparent ${s.parent_shard_id}` : "") +
    (s.adjacent_parent_shard_id ? ` + ${s.adjacent_parent_shard_id}` : "");

  // ------------------------------------------------------------------ sections
  const ALARM_ORDER = { ALARM: 0, INSUFFICIENT_DATA: 1, OK: 2 };

  function renderAlarms({ alarms = [], history = [] }, now) {
    const body = document.querySelector("#alarms .body");
    const by = (st) => alarms.filter((a) => a.state === st);
    const firing = by("ALARM").length;
    const count = document.getElementById("alarm-count");
    count.hidden = !firing;
    count.textContent = firing ? `${firing} firing` : "";
    const sorted = [...alarms].sort((a, b) =>
      (ALARM_ORDER[a.state] ?? 3) - (ALARM_ORDER[b.state] ?? 3) || a.name.localeCompare(b.name));
    const row = (a) => [badge(a.state), el("span", { title: a.description || null, text: a.name }), a.severity || "—",
      a.reason || "—", fmtAgo(a.since_ms, now)];
    const cols = [["State"], ["Alarm"], ["Severity"], ["Reason"], ["Since"]];
    const notOk = sorted.filter((a) => a.state !== "OK");
    body.replaceChildren(el("div", { class: "card" },
      el("p", { class: "summary" },
        ...["ALARM", "INSUFFICIENT_DATA", "OK"].map((st) => el("span", {}, badge(st), ` ${by(st).length}`)),
        el("span", { class: "muted", text: `${alarms.length} alarms` })),
      notOk.length ? table("Alarms not OK", cols, notOk.map(row), "")
        : el("p", { class: "empty", text: alarms.length ? "Every alarm is OK." : "No alarms defined." }),
      alarms.length ? details("alarm-all", `All alarms and their conditions (${alarms.length})`,
        table("All alarms", [...cols.slice(0, 3), ["Condition"], ...cols.slice(3)],
          sorted.map((a) => {
            const r = row(a);
            r.splice(3, 0, el("span", { class: "muted", text: a.summary || "—" }));
            return r;
          }),
          "")) : null,
      history.length ? details("alarm-history", `History (${history.length} transitions)`,
        table("Alarm history", [["Time"], ["Alarm"], ["From"], ["To"], ["Reason"]],
          history.slice(0, 50).map((t) => [fmtTime(t.time_ms), t.alarm, badge(t.old_state), badge(t.new_state),
            t.reason || "—"]), "")) : null));
  }

  function renderStreams(streams, shardsByStream, data, start, end, now) {
    const body = document.querySelector("#streams .body");
    if (!streams.length) return body.replaceChildren(el("p", { class: "empty", text: "No streams." }));
    body.replaceChildren(...streams.map((s) => {
      const rates = s.rates || {};
      const totals = s.totals || {};
      return el("article", { class: "card", "aria-labelledby": `stream-${s.name}` },
        el("div", { class: "card-head" },
          el("h3", { id: `stream-${s.name}`, text: s.name }), badge(s.status),
          facts([
            ["Mode", s.mode ?? "—"],
            ["Shards", `${s.shards_open ?? "?"} open · ${s.shards_closed ?? 0} closed`],
            ["Retention", s.retention_hours ? `${s.retention_hours} h` : "—"],
            ["In (1 min)", `${fmtNum(rates.incoming_records_per_s)} rec/s`],
            ["Records", fmtNum(totals.incoming_records)],
            ["Iterator age", fmtMs(s.iterator_age_ms)],
            ["Put latency p50/p99", `${fmtMs(s.put_latency_p50_ms)} / ${fmtMs(s.put_latency_p99_ms)}`],
            ["Last record", fmtAgo(s.last_incoming_ms, now)],
          ])),
        chartsFor(s.name, [
          ["Incoming records", "rate", ["incoming", "incoming"]],
          ["Incoming bytes", "byterate", ["inBytes", "bytes"]],
          ["Outgoing records (GetRecords)", "rate", ["outgoing", "outgoing"]],
          ["Iterator age (GetRecords)", "seconds", ["streamAge", "age"]],
          ["Throttled", "count", ["writeThrottled", "write"], ["readThrottled", "read"]],
        ], data, start, end),
        shardMap(s.name, shardsByStream.get(s.name) || []));
    }));
  }

  function renderFunctions(functions, data, start, end) {
    const body = document.querySelector("#functions .body");
    if (!functions.length) return body.replaceChildren(el("p", { class: "empty", text: "No functions." }));
    body.replaceChildren(...functions.map((f) => el("article", { class: "card", "aria-labelledby": `fn-${f.name}` },
      el("div", { class: "card-head" },
        el("h3", { id: `fn-${f.name}`, text: f.name }),
        el("code", { class: "muted", text: f.handler || "" }),
        facts([
          ["Invocations", fmtNum(f.invocations)],
          ["Errors", fmtNum(f.errors)],
          ["Timeouts", fmtNum(f.timeouts)],
          ["Throttles", fmtNum(f.throttles)],
          ["Cold starts", fmtNum(f.cold_starts)],
          ["Concurrency", `${f.in_flight ?? 0} / ${f.concurrency ?? "?"}`],
          ["Duration p50/p99", `${fmtMs(f.duration_p50_ms)} / ${fmtMs(f.duration_p99_ms)}`],
          ["Timeout", f.timeout_s ? `${f.timeout_s} s` : "—"],
          ["Memory", f.memory_mb ? `${f.memory_mb} MB` : "—"],
        ])),
      chartsFor(f.name, [
        ["Invocations by outcome", "count", ["invocations", null]],
        ["Duration", "seconds", ["durationP50", "p50"], ["durationP99", "p99"]],
        ["Iterator age by stream", "seconds", ["esmAge", null]],
        ["Lag by stream (records)", "count", ["esmLag", null]],
        ["Concurrent executions", "count", ["concurrency", "in flight"]],
      ], data, start, end))));
  }

  const CONFIG_FIELDS = [
    ["Batch size", (c) => c.batch_size],
    ["Batching window", (c) => `${c.maximum_batching_window_s ?? 0} s`],
    ["Parallelization", (c) => c.parallelization_factor],
    ["Starting position", (c) => c.starting_position],
    ["Retry attempts", (c) => (c.maximum_retry_attempts === -1 ? "unlimited" : c.maximum_retry_attempts)],
    ["Max record age", (c) => (c.maximum_record_age_s === -1 ? "unlimited" : `${c.maximum_record_age_s} s`)],
    ["Bisect on error", (c) => (c.bisect_batch_on_function_error ? "yes" : "no")],
    ["Report item failures", (c) => ((c.function_response_types || []).includes("ReportBatchItemFailures")
      ? "yes" : "no")],
    ["Tumbling window", (c) => (c.tumbling_window_s ? `${c.tumbling_window_s} s` : "off")],
    ["Filters", (c) => (c.filter_patterns || []).length || "none"],
    ["On failure", (c) => (c.on_failure ? `${c.on_failure.kind}: ${c.on_failure.target}` : "none")],
  ];

  function renderMappings(mappings) {
    const body = document.querySelector("#mappings .body");
    if (!mappings.length) return body.replaceChildren(el("p", { class: "empty", text: "No event source mappings." }));
    body.replaceChildren(...mappings.map((m) => {
      const c = m.config || {};
      const t = m.totals || {};
      const filters = c.filter_patterns || [];
      const lag = (v) => (v === null || v === undefined ? "—" : fmtNum(v));
      return el("article", { class: "card", "aria-label": `Mapping ${m.stream} to ${m.function}` },
        el("div", { class: "card-head" },
          el("h3", {}, `${m.stream} → ${m.function}`), badge(m.state), m.status ? badge(m.status) : null,
          el("code", { class: "muted", text: m.uuid })),
        facts([["Last result", m.last_result ?? "—"],
          ["Shards", `${m.shards_active ?? 0} active · ${m.shards_finished ?? 0} finished`]]),
        facts([
          ["Iterator age", fmtMs(m.iterator_age_ms)],
          ["Lag (records)", lag(m.lag_records)],
          ["Polled", fmtNum(t.polled)],
          ["Filtered out", fmtNum(t.filtered_out)],
          ["Invoked", fmtNum(t.invoked_records)],
          ["Failed", fmtNum(t.failed_invoke_records)],
          ["Dropped", fmtNum(t.dropped)],
          ["Sent on failure", fmtNum(t.dead_lettered)],
        ], "tiles"),
        facts(CONFIG_FIELDS.map(([k, f]) => [k, String(f(c) ?? "—")]), "config"),
        (m.shards || []).length ? details(`mapping-shards:${m.uuid}`, "Shards",
          table(`Shards of mapping ${m.uuid}`,
            [["Shard"], ["Iterator age", true], ["Lag", true], ["Behind latest", true], ["Last result"]],
            m.shards.map((s) => [el("code", { text: s.shard_id }), fmtMs(s.iterator_age_ms), lag(s.lag_records),
              fmtMs(s.millis_behind), s.last_result ?? "—"]), "")) : null,
        (m.leases?.shards || []).length ? details(`mapping-leases:${m.uuid}`, "Leases",
          table(`Shard leases of mapping ${m.uuid} (this worker: ${m.leases.worker})`,
            [["Shard"], ["Owner"], ["Epoch", true], ["Checkpoint"]],
            m.leases.shards.map((s) => [el("code", { text: s.shard_id }), s.owner ?? "—", fmtNum(s.epoch),
              s.finished ? "SHARD_END" : (s.checkpoint ?? "—")]), "")) : null,
        filters.length
          ? details(`filters:${m.uuid}`, "Filter patterns", el("pre", { text: filters.join("\n") }))
          : null);
    }));
  }

  function renderSources(sources) {
    const section = document.getElementById("sources");
    section.hidden = !sources.length;
    section.querySelector(".body").replaceChildren(...sources.map((s) => {
      const flags = [s.binlog_purged ? badge("binlog purged") : null, s.binlog_at_risk ? badge("binlog at risk") : null];
      return el("article", { class: "card", "aria-label": `Source ${s.name}` },
        el("div", { class: "card-head" }, el("h3", {}, `${s.name} → ${s.stream ?? "—"}`),
          badge(s.snapshot_running ? "Snapshot" : "Streaming"), ...flags),
        facts([
          ["Lag", fmtMs((s.lag_seconds ?? 0) * 1000)],
          ["Binlog behind", s.binlog_bytes_behind === undefined ? "—" : fmtBytes(s.binlog_bytes_behind)],
        ], "tiles"),
        table(`Tables of source ${s.name}`, [["Table"], ["Rows put", true], ["Snapshot", true]],
          (s.tables || []).map((t) => [el("code", { text: t.name }), fmtNum(t.rows_total ?? 0),
            t.snapshot_rows === undefined ? "—"
              : `${fmtNum(t.snapshot_rows)} / ~${fmtNum(t.snapshot_rows_estimated ?? t.snapshot_rows)}`]),
          "No table yet."));
    }));
  }

  function renderFailures({ failures = [] }, mappings) {
    const dest = new Map(mappings.map((m) => [m.uuid, m.config?.on_failure]));
    const body = document.querySelector("#failures .body");
    body.replaceChildren(el("div", { class: "card" }, table("Recent on-failure records",
      [["Time"], ["Function"], ["Stream"], ["Condition"], ["Shard"], ["Sequence numbers"], ["Records", true],
        ["Arrival of first – last"], ["Invokes", true], ["Sent to"], ["Record"]],
      failures.map((f) => {
        const msg = f.record || {};
        const info = msg.KinesisBatchInfo || {};
        const ctx = msg.requestContext || {};
        return [
          msg.timestamp ? fmtTime(Date.parse(msg.timestamp)) : "—",
          f.function ?? "—",
          f.stream ?? "—",
          badge(ctx.condition),
          el("code", { text: info.shardId ?? "—" }),
          el("code", { title: `${info.startSequenceNumber} – ${info.endSequenceNumber}`,
            text: `${short(info.startSequenceNumber)} – ${short(info.endSequenceNumber)}` }),
          fmtNum(info.batchSize),
          `${info.approximateArrivalOfFirstRecord ?? "—"} – ${info.approximateArrivalOfLastRecord ?? "—"}`,
          fmtNum(ctx.approximateInvokeCount),
          dest.get(f.mapping) ? `${dest.get(f.mapping).kind}: ${dest.get(f.mapping).target}` : "none (dropped)",
          details(`failure:${ctx.requestId}:${info.shardId}:${info.startSequenceNumber}`, "JSON",
            el("pre", { text: JSON.stringify(msg, null, 2) })),
        ];
      }), "No failed batches. Records that exhaust their retries or age out are reported here.")));
  }

  const short = (seq) => (seq && seq.length > 14 ? `…${seq.slice(-10)}` : seq ?? "—");

  // ------------------------------------------------------------------ refresh loop
  function setStatus(text, error = false) {
    const s = document.getElementById("status");
    s.textContent = text;
    s.classList.toggle("error", error);
  }

  async function refresh() {
    if (document.hidden) return;
    if (state.busy) { state.again = true; return; }  // e.g. a range picked while a refresh is under way
    state.busy = true;
    state.again = false;
    try {
      const [overview, alarms, failures] = await Promise.all([
        getJSON("/api/overview"), getJSON("/api/alarms"), getJSON("/api/failures?limit=20")]);
      const streams = overview.streams || [];
      const [shardLists, data] = await Promise.all([
        Promise.all(streams.map((s) => getJSON(`/api/streams/${encodeURIComponent(s.name)}/shards`)
          .then((r) => r.shards || []).catch(() => []))),
        queryAll(CHART_QUERIES),
      ]);
      const now = overview.now_ms || Date.now();
      const end = now, start = now - state.range * 1000;
      renderAlarms(alarms, now);
      renderStreams(streams, new Map(streams.map((s, i) => [s.name, shardLists[i]])), data, start, end, now);
      renderFunctions(overview.functions || [], data, start, end);
      renderMappings(overview.mappings || []);
      renderSources(overview.sources || []);
      renderFailures(failures, overview.mappings || []);
      setStatus(`Updated ${fmtTime(Date.now())}`);
      document.getElementById("token-form").hidden = true;
    } catch (err) {
      if (err instanceof NeedsToken) {
        setStatus(err.message, true);
        document.getElementById("token-form").hidden = false;
      } else {
        setStatus(`Cannot reach the server (${err.message}); retrying`, true);
      }
    } finally {
      state.busy = false;
      if (state.again) refresh();
    }
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = document.getElementById("auto").checked ? setInterval(refresh, REFRESH_MS) : null;
  }

  function init() {
    takeTokenFromLink();
    document.getElementById("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("token");
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      refresh();
    });
    const wanted = Number(new URLSearchParams(location.search).get("range"));
    if (PERIODS[wanted]) state.range = wanted;
    for (const input of document.querySelectorAll("input[name=range]")) {
      input.checked = Number(input.value) === state.range;
      input.addEventListener("change", () => {
        state.range = Number(input.value);
        const url = new URL(location.href);
        url.searchParams.set("range", String(state.range));
        history.replaceState(null, "", url);
        refresh();
      });
    }
    document.getElementById("auto").addEventListener("change", schedule);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    refresh();
    schedule();
  }

  init();
})();
