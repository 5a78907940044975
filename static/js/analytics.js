/* Analytics: totals, uPlot charts over time, breakdown, recent requests, export links and the project budget.
   Live: each `llm.request` event adds its row at once; charts and percentiles reload shortly after. */
"use strict";
(function () {
  const {api, act, events, el, toast} = window.Loom;
  const form = document.getElementById("filters");
  const COLORS = ["#3558d4", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d",
                  "#364fc7", "#495057"];
  const charts = {};
  let reloadTimer = null, lastLoad = 0, latest = null;

  function state() {
    const data = new FormData(form);
    return {range: data.get("range") || "24h", project_id: data.get("project_id") || "",
            group_by: data.get("group_by") || ""};
  }

  function query(extra) {
    const s = state(), params = new URLSearchParams({since: s.range});
    if (s.project_id) params.set("project_id", s.project_id);
    Object.entries(extra || {}).forEach(function ([k, v]) { if (v) params.set(k, v); });
    return params.toString();
  }

  const fmt = {
    requests: function (v) { return String(v); },
    tokens: function (v) { return v >= 1e6 ? (v / 1e6).toFixed(2) + " M" : v >= 1e4 ? (v / 1e3).toFixed(1) + " k" : String(v); },
    cost_usd: function (v) { return "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4)); },
    error_rate: function (v) { return (100 * v).toFixed(1) + " %"; },
    ms: function (v) { return v === null || v === undefined ? "–" : Math.round(v) + " ms"; },
  };
  fmt.latency_p50_ms = fmt.ms;
  fmt.latency_p95_ms = fmt.ms;

  function showTotals(totals) {
    document.querySelectorAll("[data-total]").forEach(function (node) {
      const key = node.dataset.total;
      node.textContent = fmt[key](totals[key]);
      node.dataset.value = totals[key] === null ? "" : String(totals[key]);
    });
  }

  function showUnpriced(models) {
    const note = document.getElementById("unpriced");
    note.hidden = !models.length;
    note.textContent = models.length ? "No price for " + models.join(", ") + ": counted as $0 (set one with " +
      "PUT /api/v1/analytics/prices/{model} or `loom analytics set-price`)." : "";
  }

  function showGroups(summary) {
    const body = document.getElementById("groups");
    document.getElementById("groups-key").textContent = summary.group_by ? summary.group_by : "Group";
    document.getElementById("groups-by").textContent = summary.group_by ? "by " + summary.group_by : "";
    body.textContent = "";
    if (!summary.group_by || !summary.groups.length) {
      body.appendChild(el("tr", {class: "empty"}, [el("td", {colspan: 7, text: summary.group_by ?
        "No requests in this range." : "Choose a “group by” to break the totals down."})]));
      return;
    }
    summary.groups.forEach(function (g) {
      body.appendChild(el("tr", {"data-group": String(g.key)}, [
        el("td", {text: g.label === null ? "(none)" : String(g.label)}), el("td", {text: String(g.requests)}),
        el("td", {text: fmt.tokens(g.tokens)}), el("td", {text: fmt.cost_usd(g.cost_usd)}),
        el("td", {text: String(g.errors)}), el("td", {text: fmt.ms(g.latency_p50_ms)}),
        el("td", {text: fmt.ms(g.latency_p95_ms)})]));
    });
  }

  function requestRow(r) {
    return el("tr", {"data-request-id": String(r.id)}, [
      el("td", {}, [el("time", {datetime: r.ts, text: new Date(r.ts).toLocaleTimeString()})]),
      el("td", {text: r.project_id === null ? "–" : String(r.project_id)}),
      el("td", {}, r.bead_id ? [el("a", {href: "/beads/" + r.bead_id, text: "#" + r.bead_id})] : []),
      el("td", {text: r.persona || "–"}), el("td", {text: r.model || "–"}),
      el("td", {}, [el("span", {class: "badge" + (r.status === "ok" ? "" : " status-blocked"), text: r.status})]),
      el("td", {text: String(r.prompt_tokens + r.completion_tokens)}), el("td", {text: fmt.cost_usd(r.cost_usd)}),
      el("td", {text: fmt.ms(r.latency_ms)})]);
  }

  function showRecent(items) {
    const body = document.getElementById("recent");
    body.textContent = "";
    if (!items.length) body.appendChild(el("tr", {class: "empty"}, [el("td", {colspan: 9, text: "No requests in this range."})]));
    items.forEach(function (r) { body.appendChild(requestRow(r)); });
  }

  // ------------------------------------------------------------------ charts
  function chart(key, series, xs, format) {
    const box = document.getElementById("chart-" + key);
    if (charts[key]) { charts[key].destroy(); delete charts[key]; }
    if (typeof uPlot === "undefined") { box.textContent = "Charts need static/vendor/uplot."; return; }
    const data = [xs].concat(series.map(function (s) { return s.values; }));
    const opts = {width: Math.max(260, box.clientWidth), height: 160, legend: {show: series.length > 1 || key === "latency"},
                  cursor: {drag: {x: false, y: false}}, scales: {x: {time: true}},
                  series: [{}].concat(series.map(function (s, i) {
                    return {label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
                            points: {show: true, size: 5}, spanGaps: false,
                            value: function (u, v) { return v === null ? "–" : format(v); }};
                  })),
                  axes: [{}, {size: 64, values: function (u, ticks) { return ticks.map(format); }}]};
    charts[key] = new uPlot(opts, data, box);
    const total = series.reduce(function (sum, s) { return sum + s.values.reduce(function (a, v) { return a + (v || 0); }, 0); }, 0);
    box.setAttribute("aria-label", box.previousElementSibling.textContent + ": " + series.length + " series over " +
                     xs.length + " buckets" + (key === "latency" || key === "error_rate" ? "" : ", " + format(total) + " in all"));
    box.dataset.points = String(xs.length);
    box.dataset.series = String(series.length);
    box.dataset.sum = String(total);
  }

  function showCharts(ts) {
    const lines = ts.series;
    const xs = (lines[0] ? lines[0].points : []).map(function (p) { return Date.parse(p.t) / 1000; });
    const label = function (s) { return s.key === null ? "all" : String(s.label === null ? "(none)" : s.label); };
    const of = function (metric, scale) {
      return lines.map(function (s, i) {
        return {label: label(s), color: COLORS[i % COLORS.length], values: s.points.map(function (p) {
          const v = p[metric];
          return v === null || v === undefined ? null : v * (scale || 1);
        })};
      });
    };
    chart("requests", of("requests"), xs, function (v) { return String(Math.round(v * 100) / 100); });
    chart("tokens", of("tokens"), xs, fmt.tokens);
    chart("cost_usd", of("cost_usd"), xs, fmt.cost_usd);
    chart("error_rate", of("error_rate", 100), xs, function (v) { return v.toFixed(1) + " %"; });
    const latency = ts.group_by ? of("latency_p95_ms").map(function (s) { s.label += " p95"; return s; }) :
      [{label: "p50", color: COLORS[0], values: lines[0].points.map(function (p) { return p.latency_p50_ms; })},
       {label: "p95", color: COLORS[1], values: lines[0].points.map(function (p) { return p.latency_p95_ms; })}];
    chart("latency", latency, xs, fmt.ms);
  }

  // ------------------------------------------------------------------ budget
  function showBudget(budget) {
    document.getElementById("budget-none").hidden = !!budget;
    document.getElementById("budget-body").hidden = !budget;
    if (!budget) return;
    document.getElementById("budget-spend").textContent = "Spent " + fmt.cost_usd(budget.spent_usd) + " and " +
      budget.spent_tokens + " tokens in all; today (UTC) " + fmt.cost_usd(budget.day_usd) + " and " +
      budget.day_tokens + " tokens" + (budget.reserved_tokens ? "; " + budget.reserved_tokens + " tokens held by calls in flight" : "") + ".";
    const exhausted = document.getElementById("budget-exhausted");
    exhausted.hidden = !budget.exhausted.length;
    exhausted.textContent = budget.exhausted.length ? "Exhausted: " + budget.exhausted.join(", ") +
      ". Beads that reach it are blocked; raise the limit, then unblock them." : "";
    ["daily_usd", "total_usd", "daily_tokens", "total_tokens"].forEach(function (name) {
      const input = document.getElementById("b-" + name);
      if (input && document.activeElement !== input) input.value = budget[name] === null ? "" : String(budget[name]);
    });
    const limits = document.getElementById("budget-limits");
    if (limits) {
      limits.textContent = "";
      ["daily_usd", "total_usd", "daily_tokens", "total_tokens"].forEach(function (name) {
        limits.appendChild(el("dt", {text: name.replace("_", " ")}));
        limits.appendChild(el("dd", {"data-limit": name, text: budget[name] === null ? "no limit" : String(budget[name])}));
      });
    }
  }

  const budgetForm = document.getElementById("budget-form");
  if (budgetForm) {
    budgetForm.addEventListener("submit", function (e) {
      e.preventDefault();
      const body = {};
      ["daily_usd", "total_usd", "daily_tokens", "total_tokens"].forEach(function (name) {
        const raw = budgetForm.elements[name].value.trim();
        body[name] = raw === "" ? null : Number(raw);
      });
      const project = state().project_id;
      act(budgetForm.querySelector("button"), function () { return api("PUT", "/projects/" + project + "/budget", body); },
          "Budget saved").then(showBudget).catch(function () {});
    });
  }

  // ------------------------------------------------------------------ loading and live updates
  async function load() {
    lastLoad = Date.now();
    const s = state();
    const params = new URLSearchParams(s);
    history.replaceState(null, "", location.pathname + "?" + params.toString());
    ["csv", "json"].forEach(function (f) {
      document.getElementById("export-" + f).href = "/api/v1/analytics/export?" + query({format: f});
    });
    const [summary, ts, recent, budget] = await Promise.all([
      api("GET", "/analytics/summary?" + query({group_by: s.group_by})),
      api("GET", "/analytics/timeseries?" + query({group_by: s.group_by})),
      api("GET", "/analytics/requests?" + query({limit: "25"})),
      s.project_id ? api("GET", "/projects/" + s.project_id + "/budget") : Promise.resolve(null)]);
    latest = summary;
    showTotals(summary.totals);
    showUnpriced(summary.unpriced_models);
    showGroups(summary);
    showCharts(ts);
    showRecent(recent.items);
    showBudget(budget);
    document.body.dataset.loaded = String(lastLoad);
  }

  function reload() {
    load().catch(function (err) { toast("Analytics: " + err.message, "error"); });
  }

  function reloadSoon() {  // at most every 2 s, and 0.5 s after the last event of a burst
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(reload, Math.max(500, 2000 - (Date.now() - lastLoad)));
  }

  events.on(function (e) {
    const s = state();
    if (s.project_id && String(e.project_id) !== s.project_id) return;
    if (e.type === "llm.request") {
      const d = e.data || {};
      const body = document.getElementById("recent");
      const empty = body.querySelector(".empty");
      if (empty) empty.remove();
      body.prepend(requestRow({id: d.request_id, ts: d.ts || e.ts, project_id: e.project_id, bead_id: e.bead_id,
                               persona: d.persona, model: d.model, status: d.status, prompt_tokens: d.prompt_tokens || 0,
                               completion_tokens: d.completion_tokens || 0, cost_usd: d.cost_usd || 0, latency_ms: d.latency_ms}));
      while (body.children.length > 25) body.lastElementChild.remove();
      if (latest) {  // the sums move at once; percentiles and charts with the reload
        const t = latest.totals;
        t.requests += 1;
        t.tokens += (d.prompt_tokens || 0) + (d.completion_tokens || 0);
        t.cost_usd += d.cost_usd || 0;
        showTotals(t);
      }
      reloadSoon();
    } else if (e.type === "budget.exhausted") {
      toast((e.data && e.data.message) || "A budget is exhausted", "error");
      reloadSoon();
    }
  });
  events.onReset(reload);
  form.addEventListener("change", reload);
  let resizeTimer = null;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(reload, 300); });

  const initial = new URLSearchParams(location.search);
  ["range", "project_id", "group_by"].forEach(function (name) {
    const field = form.elements[name];
    if (initial.get(name) !== null && field.querySelector('option[value="' + CSS.escape(initial.get(name)) + '"]')) {
      field.value = initial.get(name);
    }
  });
  reload();
})();
