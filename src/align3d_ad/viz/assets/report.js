/* align3d-ad report: draws the plots and drives the 3D viewer (plotly.js is embedded above).
   State for tests and people alike: document.body.dataset.viewer is "ready" once the viewer has
   drawn, and data-viewer-draws counts its draws; window.align3dErrors lists script errors. */
(function () {
  "use strict";
  window.align3dErrors = window.align3dErrors || [];
  window.addEventListener("error", function (e) { window.align3dErrors.push(String(e.message)); });

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function bytes(b64) {
    var s = atob(b64), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function u16(b64) { var b = bytes(b64); return new Uint16Array(b.buffer, 0, b.length / 2); }
  var STEPS = 65535;
  var CONFIG = { responsive: true, displaylogo: false };

  /* ---------------------------------------------------------------- 2D plots, drawn when seen */
  var figures = readJson("a3d-figures") || {};
  function draw(div) {
    if (div.dataset.drawn) return;
    div.dataset.drawn = "1";
    var fig = figures[div.dataset.fig];
    Plotly.newPlot(div, fig.data, fig.layout, CONFIG);
  }
  var plots = Array.prototype.slice.call(document.querySelectorAll("div.plot[data-fig]"));
  if ("IntersectionObserver" in window) {
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { draw(e.target); seen.unobserve(e.target); } });
    }, { rootMargin: "300px" });
    plots.forEach(function (d) { seen.observe(d); });
  } else {
    plots.forEach(draw);
  }

  /* ------------------------------------------------------------------------------ 3D viewer */
  var clouds = readJson("a3d-clouds") || [];
  var plot = document.getElementById("v-plot");
  if (!plot || !clouds.length) return;
  var pick = document.getElementById("v-sample"), colour = document.getElementById("v-color");
  var mask = document.getElementById("v-mask"), thr = document.getElementById("v-thr");
  var thrText = document.getElementById("v-thr-val"), size = document.getElementById("v-size");
  var count = document.getElementById("v-count"), info = document.getElementById("v-info");
  var NAMES = { fused: "fused score", aligned: "aligned branch", rendering: "rendering branch", gt: "ground truth" };
  var cache = {}, current = null, draws = 0;

  function decode(i) {
    if (cache[i]) return cache[i];
    var c = clouds[i].cloud, q = u16(c.xyz), n = c.shown, x = new Float32Array(n),
        y = new Float32Array(n), z = new Float32Array(n);
    for (var k = 0; k < n; k++) {
      x[k] = c.origin[0] + q[3 * k] * c.scale;
      y[k] = c.origin[1] + q[3 * k + 1] * c.scale;
      z[k] = c.origin[2] + q[3 * k + 2] * c.scale;
    }
    var ch = {};
    Object.keys(c.channels).forEach(function (name) {
      var s = c.channels[name], v = u16(s.data), out = new Float32Array(n), span = s.hi - s.lo;
      for (var k = 0; k < n; k++) out[k] = s.lo + (v[k] / STEPS) * span;
      ch[name] = { values: out, lo: s.lo, hi: s.hi };
    });
    var gt = null;
    if (c.gt) { gt = new Float32Array(n); var g = bytes(c.gt); for (var k2 = 0; k2 < n; k2++) gt[k2] = g[k2]; }
    cache[i] = { x: x, y: y, z: z, channels: ch, gt: gt, n: n };
    return cache[i];
  }
  function fused(d) { return d.channels.fused || d.channels[Object.keys(d.channels)[0]]; }
  function threshold(d) {
    var f = fused(d);
    return f.lo + (Number(thr.value) / Number(thr.max)) * (f.hi - f.lo);
  }
  function setThreshold(d, value) {
    var f = fused(d), span = f.hi - f.lo;
    thr.value = span > 0 ? Math.round(((value - f.lo) / span) * Number(thr.max)) : 0;
  }
  /* a two-entry colour bar (the same place as the score's, so the scene keeps its size) */
  function steps(off, on) { return [[0, off], [0.5, off], [0.5, on], [1, on]]; }
  function legend(title, names) {
    return { thickness: 12, len: 0.6, title: { text: title }, tickvals: [0.25, 0.75], ticktext: names };
  }
  function marker(d) {
    var m = { size: Number(size.value), opacity: 1 };
    if (mask.checked) {
      var t = threshold(d), f = fused(d).values, v = new Float32Array(d.n), hits = 0, inGt = 0;
      for (var k = 0; k < d.n; k++) { if (f[k] >= t) { v[k] = 1; hits++; if (d.gt && d.gt[k]) inGt++; } }
      m.color = v; m.cmin = 0; m.cmax = 1; m.showscale = true;
      m.colorscale = steps("#c8c8c8", "#e6194b");
      m.colorbar = legend("predicted", ["below", "at or above"]);
      var note = hits.toLocaleString() + " of " + d.n.toLocaleString() + " shown points at or above " + t.toPrecision(4);
      if (d.gt && hits) note += "; " + (100 * inGt / hits).toFixed(1) + "% of them in the ground truth";
      thrText.textContent = t.toPrecision(4); info.textContent = note;
      return m;
    }
    thrText.textContent = threshold(d).toPrecision(4);
    if (colour.value === "gt" && d.gt) {
      m.color = d.gt; m.cmin = 0; m.cmax = 1; m.showscale = true;
      m.colorscale = steps("#b4b4b4", "#ff00ff");
      m.colorbar = legend("ground truth", ["normal", "anomalous"]);
      info.textContent = "ground truth: magenta = anomalous, grey = normal";
      return m;
    }
    var ch = d.channels[colour.value] || fused(d);
    m.color = ch.values; m.cmin = ch.lo; m.cmax = ch.hi > ch.lo ? ch.hi : ch.lo + 1e-6;
    m.colorscale = "Jet"; m.showscale = true;
    m.colorbar = { thickness: 12, len: 0.6, title: { text: NAMES[colour.value] || colour.value } };
    info.textContent = NAMES[colour.value] + " from " + ch.lo.toPrecision(4) + " (blue) to " + ch.hi.toPrecision(4) + " (dark red)."; 
    return m;
  }
  function done() {
    draws += 1;
    if (draws === 1) document.body.dataset.readyMs = String(Math.round(performance.now()));
    document.body.dataset.viewerDraws = String(draws);
    document.body.dataset.viewer = "ready";
  }
  function show(i) {
    current = i;
    var entry = clouds[i], d = decode(i), c = entry.cloud;
    Array.prototype.slice.call(colour.options).forEach(function (o) {
      o.disabled = o.value === "gt" ? !d.gt : !d.channels[o.value];
    });
    if (colour.selectedOptions[0] && colour.selectedOptions[0].disabled) colour.value = "fused";
    if (!size.dataset.touched) size.value = d.n < 5000 ? 4 : d.n < 20000 ? 3 : 2;
    setThreshold(d, entry.threshold != null ? entry.threshold : (fused(d).lo + fused(d).hi) / 2);
    count.textContent = c.shown < c.total
      ? "showing " + c.shown.toLocaleString() + " of " + c.total.toLocaleString() + " points (uniform random subset)"
      : "all " + c.total.toLocaleString() + " points";
    var camera = entry.organised
      ? { eye: { x: 0, y: 0, z: -1.8 }, up: { x: 0, y: -1, z: 0 } }
      : { eye: { x: 1.25, y: 1.25, z: 1.25 }, up: { x: 0, y: 0, z: 1 } };
    var axis = { visible: false, showbackground: false };
    var layout = {
      margin: { l: 0, r: 0, t: 0, b: 0 }, paper_bgcolor: "#fff", showlegend: false,
      scene: { aspectmode: "data", xaxis: axis, yaxis: axis, zaxis: axis, camera: camera },
      uirevision: String(i)
    };
    var trace = { type: "scatter3d", mode: "markers", x: d.x, y: d.y, z: d.z, marker: marker(d),
                  hoverinfo: "skip" };
    Plotly.react(plot, [trace], layout, CONFIG).then(done);
  }
  function restyle() {
    if (current === null) return;
    var m = marker(decode(current));
    Plotly.restyle(plot, { marker: [m] }).then(done);
  }
  pick.addEventListener("change", function () { show(Number(pick.value)); });
  colour.addEventListener("change", function () { mask.checked = false; restyle(); });
  mask.addEventListener("change", restyle);
  thr.addEventListener("input", function () { if (mask.checked) restyle(); else thrText.textContent = threshold(decode(current)).toPrecision(4); });
  size.addEventListener("input", function () { size.dataset.touched = "1"; restyle(); });
  Array.prototype.slice.call(document.querySelectorAll("button[data-cloud]")).forEach(function (b) {
    b.addEventListener("click", function () {
      pick.value = b.dataset.cloud; show(Number(b.dataset.cloud));
      document.getElementById("viewer").scrollIntoView({ behavior: "smooth" });
    });
  });
  show(Number(pick.value || 0));
})();
