"""The report's stylesheet and script, embedded in the page (no external files or network)."""

from __future__ import annotations

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2330;--muted:#596274;--border:#d6dbe4;
--panel:#f4f6f9;--hover:#eaf0fb;--accent:#2355c0;--c0:#2f6fde;--c1:#dd7426;--c2:#7d8796;
--c3:#23966a;--warn:#b05f00;--good:#1b7d4a;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e4e8ef;--muted:#a0a9b8;
--border:#353c48;--panel:#1c2128;--hover:#232c3a;--accent:#86b0ff;--c0:#5e9dff;--c1:#f29d52;
--c2:#8e98aa;--c3:#4cc490;--warn:#f3b559;--good:#5fd39b;--bad:#ff8a80}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header.top{position:sticky;top:0;z-index:5;background:var(--bg);border-bottom:1px solid var(--border);
padding:.5rem 1.25rem;display:flex;flex-wrap:wrap;gap:.25rem 1.5rem;align-items:baseline}
header.top h1{font-size:1.1rem;margin:0}
header.top nav a{margin-right:1rem}
main{max-width:1180px;margin:0 auto;padding:0 1.25rem 4rem}
a{color:var(--accent)}
h2{font-size:1.25rem;margin:2rem 0 .25rem;padding-top:.5rem;border-top:1px solid var(--border)}
h3{font-size:1rem;margin:1.25rem 0 .25rem}
p.lead,p.help{color:var(--muted);margin:.25rem 0 .75rem;max-width:80ch}
.missing{color:var(--muted);font-style:italic;border-left:3px solid var(--border);padding:.25rem .75rem}
.warning{color:var(--warn);font-weight:600;border-left:3px solid var(--warn);padding:.25rem .75rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:.75rem;margin:.75rem 0}
.card{background:var(--panel);border:1px solid var(--border);border-radius:8px;padding:.6rem .8rem}
.card .k{color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:1.35rem;font-weight:600;margin:.1rem 0}
.card .d{color:var(--muted);font-size:.8rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid var(--border);text-align:left;vertical-align:top}
th{font-weight:600;background:var(--panel)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted,.ci{color:var(--muted)}
.ci{font-size:.8em}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
svg.chart{width:460px;max-width:100%;height:auto;background:var(--panel);border:1px solid var(--border);
border-radius:8px}
svg.chart text{font-family:inherit}
.ct{font-size:12px;font-weight:600;fill:var(--fg)}
.tl,.vl{font-size:10px;fill:var(--muted)}
.al{font-size:11px;fill:var(--muted)}
.grid{stroke:var(--border);stroke-dasharray:2 3}
.axis{stroke:var(--muted)}
.mark{stroke:var(--warn);stroke-width:1.5;stroke-dasharray:4 3}
.f0{fill:var(--c0)}.f1{fill:var(--c1)}.f2{fill:var(--c2)}.f3{fill:var(--c3)}
.k0{stroke:var(--c0)}.k1{stroke:var(--c1)}.k2{stroke:var(--c2)}.k3{stroke:var(--c3)}
.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;background:var(--panel);
border:1px solid var(--border);border-radius:8px;padding:.6rem .8rem;margin:.5rem 0}
.filters label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
.filters label.inline{flex-direction:row;align-items:center;gap:.35rem;color:var(--fg);font-size:.9rem}
input,button{font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--border);
border-radius:5px;padding:.25rem .45rem}
input[type=search]{width:22rem;max-width:70vw}
input[type=number]{width:6.5rem}
button{cursor:pointer}
button:hover{background:var(--hover)}
#latent-count{color:var(--muted);margin-left:auto}
.tablewrap{max-height:75vh;overflow:auto;border:1px solid var(--border);border-radius:8px}
#latent-table{margin:0;width:100%;table-layout:fixed}
#latent-table td{overflow:hidden;text-overflow:ellipsis}
#latent-table thead th{position:sticky;top:0;z-index:1}
#latent-table th button{border:0;background:none;padding:0;font-weight:600;color:var(--fg)}
#latent-table th button::after{content:" \\2195";color:var(--muted);font-weight:400}
#latent-table th[aria-sort=ascending] button::after{content:" \\25B2";color:var(--accent)}
#latent-table th[aria-sort=descending] button::after{content:" \\25BC";color:var(--accent)}
#latent-table tbody tr{cursor:pointer}
#latent-table tbody tr:hover{background:var(--hover)}
#latent-table tbody tr.sel{outline:2px solid var(--accent);outline-offset:-2px}
#latent-table td.items{color:var(--muted);max-width:28rem;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}
.tag{display:inline-block;font-size:.75rem;border-radius:4px;padding:0 .35rem;margin-left:.35rem;
border:1px solid currentColor}
.tag.yes{color:var(--good)}.tag.no{color:var(--muted)}
aside#latent-view{position:fixed;top:0;right:0;bottom:0;width:min(640px,100vw);z-index:10;
background:var(--bg);border-left:1px solid var(--border);box-shadow:-6px 0 24px rgba(0,0,0,.18);
overflow-y:auto;padding:0 1.25rem 2rem}
aside#latent-view[hidden]{display:none}
.viewbar{position:sticky;top:0;background:var(--bg);display:flex;gap:.5rem;align-items:center;
padding:.6rem 0;border-bottom:1px solid var(--border);margin-bottom:.5rem}
.viewbar .spacer{flex:1}
#latent-view h2{border:0;margin:.5rem 0 .25rem;padding:0}
.rule{font-size:1.05rem;font-weight:600}
ol.seqs{padding-left:1.25rem}
h4{margin:.75rem 0 .1rem;font-size:.9rem}
table.kv{font-size:.9rem}
ol.seqs li{margin-bottom:.6rem}
.seq{display:flex;flex-wrap:wrap;gap:.25rem;margin-top:.2rem}
.seq span{background:var(--panel);border:1px solid var(--border);border-radius:4px;padding:0 .35rem;
font-size:.85rem}
.seq span.last{border-color:var(--accent);font-weight:600}
pre{background:var(--panel);border:1px solid var(--border);border-radius:6px;padding:.6rem;
overflow:auto;max-height:24rem;font-size:.8rem}
details{margin:.5rem 0}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:0 2rem}
"""

JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("recsae-data").textContent);
  var STR = DATA.strings;
  var LAT = DATA.latents;
  var byId = {};
  LAT.forEach(function (l) {
    byId[l.id] = l;
    var words = [l.rule || "", "#" + l.id];
    (l.top || []).forEach(function (s) { words.push(STR[s]); });
    l.search = words.join(" \u0001 ").toLowerCase();
  });
  var SVGNS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    (kids || []).forEach(function (c) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined) { return "\u2014"; }
    if (typeof x !== "number") { return String(x); }
    if (Number.isInteger(x)) { return x.toLocaleString("en-US"); }
    if (x !== 0 && Math.abs(x) < 1e-3) { return x.toExponential(1); }
    return Number(x.toPrecision(digits || 3)).toString();
  }
  function pct(x) {
    return x === null || x === undefined ? "\u2014" : fmt(100 * x, 3) + " %";
  }

  /* ---- latent table: sort and filter ---- */
  var table = document.getElementById("latent-table");
  var tbody = table ? table.tBodies[0] : null;
  var rows = tbody ? Array.prototype.slice.call(tbody.rows) : [];
  var rowById = {};
  rows.forEach(function (r) { rowById[r.dataset.latent] = r; });
  var sortKey = DATA.defaultSort.key, sortDir = DATA.defaultSort.dir;

  function sortValue(l, key) {
    var v = l[key];
    return v === null || v === undefined || v === "" ? null : v;
  }
  function applySort() {
    var mul = sortDir === "asc" ? 1 : -1;
    rows.sort(function (a, b) {
      var va = sortValue(byId[a.dataset.latent], sortKey);
      var vb = sortValue(byId[b.dataset.latent], sortKey);
      if (va === null || vb === null) {
        if (va === vb) { return byId[a.dataset.latent].id - byId[b.dataset.latent].id; }
        return va === null ? 1 : -1;  /* missing values last in both directions */
      }
      var c = typeof va === "string" ? va.localeCompare(vb) : va - vb;
      return c !== 0 ? mul * c : byId[a.dataset.latent].id - byId[b.dataset.latent].id;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    tbody.appendChild(frag);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.setAttribute("aria-sort", th.dataset.sort === sortKey
        ? (sortDir === "asc" ? "ascending" : "descending") : "none");
    });
  }
  function numInput(id) {
    var e = document.getElementById(id);
    var v = e && e.value !== "" ? parseFloat(e.value) : NaN;
    return isNaN(v) ? null : v;
  }
  function applyFilter() {
    var q = document.getElementById("f-text").value.trim().toLowerCase();
    var minConf = numInput("f-conf");
    var minFreq = numInput("f-fmin"), maxFreq = numInput("f-fmax");
    var onlyInterp = document.getElementById("f-interp").checked;
    var shown = 0;
    rows.forEach(function (r) {
      var l = byId[r.dataset.latent];
      var ok = (!q || l.search.indexOf(q) >= 0) &&
        (minConf === null || (l.conf !== null && l.conf >= minConf)) &&
        (minFreq === null || (l.freq !== null && 100 * l.freq >= minFreq)) &&
        (maxFreq === null || (l.freq !== null && 100 * l.freq <= maxFreq)) &&
        (!onlyInterp || l.interp === true);
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    document.getElementById("latent-count").textContent =
      "showing " + shown + " of " + rows.length + " latents";
  }
  if (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var b = th.querySelector("button");
      if (!b) { return; }
      b.addEventListener("click", function () {
        if (sortKey === th.dataset.sort) { sortDir = sortDir === "asc" ? "desc" : "asc"; }
        else { sortKey = th.dataset.sort; sortDir = th.dataset.dir; }
        applySort();
      });
    });
    ["f-text", "f-conf", "f-fmin", "f-fmax", "f-interp"].forEach(function (id) {
      document.getElementById(id).addEventListener("input", applyFilter);
    });
    document.getElementById("f-reset").addEventListener("click", function () {
      ["f-text", "f-conf", "f-fmin", "f-fmax"].forEach(function (id) {
        document.getElementById(id).value = "";
      });
      document.getElementById("f-interp").checked = false;
      applyFilter();
    });
    tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr");
      if (tr && ev.target.tagName !== "A") { location.hash = "latent-" + tr.dataset.latent; }
    });
    applySort();
    applyFilter();
  }

  /* ---- latent view ---- */
  var view = document.getElementById("latent-view");
  var body = document.getElementById("latent-body");

  function histogram(h) {
    var W = 460, H = 170, L = 44, R = 10, T = 12, B = 34;
    var n = h.c.length, top = Math.max.apply(null, h.c) || 1;
    var s = svg("svg", {"class": "chart", viewBox: "0 0 " + W + " " + H, role: "img"});
    s.appendChild(svg("title", {}, "activation histogram"));
    var bw = (W - L - R) / n;
    h.c.forEach(function (c, i) {
      if (c <= 0) { return; }
      var bh = (H - T - B) * c / top;
      var r = svg("rect", {"class": "f0", x: L + i * bw, y: H - B - bh,
        width: Math.max(bw - 1, 0.8), height: bh});
      var lo = Math.pow(10, h.e[0] + (h.e[1] - h.e[0]) * i / n);
      var hi = Math.pow(10, h.e[0] + (h.e[1] - h.e[0]) * (i + 1) / n);
      r.appendChild(svg("title", {}, c + " rows with activation in [" + fmt(lo) + ", " +
        fmt(hi) + ")"));
      s.appendChild(r);
    });
    s.appendChild(svg("line", {"class": "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
    s.appendChild(svg("line", {"class": "axis", x1: L, x2: L, y1: T, y2: H - B}));
    s.appendChild(svg("text", {"class": "tl", x: L - 4, y: T + 4, "text-anchor": "end"}, fmt(top)));
    s.appendChild(svg("text", {"class": "tl", x: L - 4, y: H - B, "text-anchor": "end"}, "0"));
    s.appendChild(svg("text", {"class": "tl", x: L, y: H - B + 13},
      fmt(Math.pow(10, h.e[0]))));
    s.appendChild(svg("text", {"class": "tl", x: W - R, y: H - B + 13, "text-anchor": "end"},
      fmt(Math.pow(10, h.e[1]))));
    s.appendChild(svg("text", {"class": "al", x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"},
      "activation when firing (log scale)"));
    s.appendChild(svg("text", {"class": "al", transform: "translate(11 " + (H - B + T) / 2 +
      ") rotate(-90)", "text-anchor": "middle"}, "rows"));
    return s;
  }
  function statsTable(l) {
    var t = el("table", {}, []);
    function row(k, v, help) {
      t.appendChild(el("tr", {}, [el("th", {}, [k]), el("td", {"class": "num"}, [v]),
        el("td", {"class": "muted"}, [help || ""])]));
    }
    var ci = l.lo !== null && l.hi !== null ? " [" + fmt(l.lo) + ", " + fmt(l.hi) + "]" : "";
    row("confidence", fmt(l.conf) + ci, "balanced accuracy of the rule on held-out users (95 % CI)");
    row("precision", fmt(l.p), "held out: share of rows matching the rule where the latent fires");
    row("recall", fmt(l.r), "held out: share of firing rows that match the rule");
    row("F1", fmt(l.f1), "");
    row("frequency", pct(l.freq), "share of rows on which the latent fires");
    return t;
  }
  function kvTable(rec, skip) {
    var t = el("table", {"class": "kv"}, []);
    Object.keys(rec).forEach(function (k) {
      if (k === skip) { return; }
      t.appendChild(el("tr", {}, [el("th", {}, [k.replace(/_/g, " ")]),
        el("td", {"class": typeof rec[k] === "number" ? "num" : ""}, [fmt(rec[k], 4)])]));
    });
    return t;
  }
  function render(l) {
    body.textContent = "";
    var interp = l.interp === true ? el("span", {"class": "tag yes"}, ["interpretable"])
      : l.interp === false ? el("span", {"class": "tag no"}, ["not interpretable"]) : "";
    body.appendChild(el("h2", {}, ["Latent " + l.id, interp]));
    body.appendChild(el("div", {"class": "rule"},
      [l.rule ? "Rule: " + l.rule : "No rule found for this latent."]));
    if (l.llm) {
      body.appendChild(el("div", {"class": "rule"}, ["LLM explanation: " + l.llm.x]));
      body.appendChild(el("p", {"class": "help"}, ["Predicts where the latent fires on held-out users with " +
        "balanced accuracy " + fmt(l.llm.ba) + " [" + fmt(l.llm.lo) + ", " + fmt(l.llm.hi) + "] (0.5 is chance)."]));
    }
    body.appendChild(el("h3", {}, ["Rule statistics"]));
    body.appendChild(statsTable(l));
    if (l.extra && Object.keys(l.extra).length) {
      body.appendChild(el("details", {}, [el("summary", {}, ["More statistics"]),
        kvTable(l.extra)]));
    }

    body.appendChild(el("h3", {}, ["Activation histogram"]));
    if (l.hist && l.hist.c.length) {
      body.appendChild(histogram(l.hist));
      body.appendChild(el("p", {"class": "help"}, ["Inactive on " + fmt(l.hist.z) +
        " rows (not drawn)."]));
    } else {
      body.appendChild(el("p", {"class": "missing"}, [DATA.hasHistograms
        ? "This latent never fired on the harvested rows."
        : "Not available: this run recorded no activation histograms " +
          "(report_data/latent_examples.json built without activations)."]));
    }

    body.appendChild(el("h3", {}, ["Top-activating sequences"]));
    body.appendChild(el("p", {"class": "help"}, [
      "The users' most recent items before the position where the latent fired most strongly " +
      "(oldest first; the highlighted item is the latest one)."]));
    if (l.ex && l.ex.length) {
      var ol = el("ol", {"class": "seqs"}, []);
      l.ex.forEach(function (x) {
        var seq = el("div", {"class": "seq"}, []);
        (x.ti || []).forEach(function (s, i, a) {
          seq.appendChild(el("span", i === a.length - 1 ? {"class": "last"} : {}, [STR[s]]));
        });
        var head = "activation " + fmt(x.a) + " \u00b7 user " + x.u + " \u00b7 after " + x.t +
          " items";
        ol.appendChild(el("li", {}, [head, x.ti ? seq : ""]));
      });
      body.appendChild(ol);
      if (!DATA.hasExamples) {
        body.appendChild(el("p", {"class": "missing"},
          ["Item titles need report_data/latent_examples.json, which this run lacks."]));
      }
    } else {
      body.appendChild(el("p", {"class": "missing"}, ["No top-activating rows recorded."]));
    }

    body.appendChild(el("h3", {}, ["Top items by decoder score"]));
    body.appendChild(el("p", {"class": "help"},
      ["Items whose embedding aligns best with this latent's decoder direction."]));
    if (l.top && l.top.length) {
      body.appendChild(el("ol", {}, l.top.map(function (s) { return el("li", {}, [STR[s]]); })));
    } else {
      body.appendChild(el("p", {"class": "missing"}, ["Not recorded."]));
    }

    body.appendChild(el("h3", {}, ["Ablation and steering effect"]));
    if (l.fx && l.fx.length) {
      l.fx.forEach(function (r) {
        body.appendChild(el("h4", {}, [String(r.study || "effect")]));
        body.appendChild(kvTable(r, "study"));
      });
    } else {
      body.appendChild(el("p", {"class": "missing"}, ["Not measured for this latent."]));
    }
  }
  function visibleOrder() {
    return rows.filter(function (r) { return !r.hidden; })
      .map(function (r) { return r.dataset.latent; });
  }
  function step(d) {
    var order = visibleOrder();
    var cur = view.dataset.latent, i = order.indexOf(cur);
    if (!order.length) { return; }
    var next = order[(i < 0 ? 0 : i + d + order.length) % order.length];
    location.hash = "latent-" + next;
  }
  function route() {
    var m = /^#latent-(\d+)$/.exec(location.hash);
    var prev = view && view.dataset.latent ? rowById[view.dataset.latent] : null;
    if (prev) { prev.classList.remove("sel"); }
    if (!m || !byId[m[1]]) {
      if (view) { view.hidden = true; view.dataset.latent = ""; }
      return;
    }
    render(byId[m[1]]);
    view.dataset.latent = m[1];
    view.hidden = false;
    view.scrollTop = 0;
    var r = rowById[m[1]];
    if (r) { r.classList.add("sel"); }
  }
  if (view) {
    document.getElementById("v-close").addEventListener("click", function () {
      location.hash = "latents";
    });
    document.getElementById("v-prev").addEventListener("click", function () { step(-1); });
    document.getElementById("v-next").addEventListener("click", function () { step(1); });
    document.addEventListener("keydown", function (ev) {
      if (view.hidden || ev.target.tagName === "INPUT") { return; }
      if (ev.key === "Escape") { location.hash = "latents"; }
      else if (ev.key === "ArrowRight" || ev.key === "j") { step(1); }
      else if (ev.key === "ArrowLeft" || ev.key === "k") { step(-1); }
    });
    window.addEventListener("hashchange", route);
    route();
  }
})();
"""
