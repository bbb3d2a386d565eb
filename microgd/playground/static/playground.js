/* microgd playground: the page's script. Live, it talks JSON with the server over a websocket (one run per
   tab); in a replay file, it reads the frames embedded in the page. It never evaluates what it receives:
   numbers and text are written with textContent and attributes, the graph picture is parsed as SVG and
   stripped of scripts, event handlers and outside links before it is shown. */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const SPEEDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 0]; // steps per second; 0: as fast as it goes
  const POSITIVE = [42, 111, 219], NEGATIVE = [232, 119, 46];
  const POSITIVE_CSS = "rgb(" + POSITIVE.join(",") + ")", NEGATIVE_CSS = "rgb(" + NEGATIVE.join(",") + ")";

  const state = {
    options: null, setup: null, frame: null, losses: [], sample: 0, playing: false,
    socket: null, replay: null, replayAt: 0, timer: null, pendingAcks: 0, drawScheduled: false,
    lines: [], hits: [], units: [], graphNodes: new Map(), inView: new Set(), observer: null,
  };

  // -- numbers ------------------------------------------------------------------------------------------------
  function fmt(x, digits) {
    if (x === null || x === undefined || typeof x !== "number") return "–";
    if (!isFinite(x)) return String(x);
    if (x === 0) return "0";
    const text = Number(x.toPrecision(digits || 6)).toString();
    return text === "-0" ? "0" : text.replace("e+", "e");
  }
  function signed(x) { return (typeof x === "number" && x > 0 ? "+" : "") + fmt(x); }

  // -- messages -----------------------------------------------------------------------------------------------
  function alertText(text) { $("alert").textContent = text || ""; }

  function send(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }
  function act(message) { alertText(""); send(message); }

  function connect() {
    const url = new URL("ws" + location.search, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url.href);
    state.socket = socket;
    socket.onmessage = (event) => receive(JSON.parse(event.data));
    socket.onclose = () => {
      alertText("The connection to the playground's server is closed: start it again (microgd playground) and reload this page.");
      for (const el of document.querySelectorAll("button, select, input")) el.disabled = true;
    };
  }

  function receive(message) {
    switch (message.type) {
      case "hello": hello(message); break;
      case "setup": alertText(""); showSetup(message.setup); playing(message.playing); break;
      case "frame": playing(message.playing); takeFrame(message.frame); break;
      case "state": playing(message.playing); break;
      case "error": alertText(message.message); break;
      default: break;
    }
  }

  function hello(message) {
    state.options = message.options || {};
    state.replayLink = message.replay;
    fillChoices($("dataset"), state.options.dataset);
    fillChoices($("activation"), state.options.activation);
    fillChoices($("loss-function"), state.options.loss);
    fillChoices($("optimizer"), state.options.optimizer);
    $("note").textContent = "This tab has its own run (session " + message.session + "): other tabs and windows " +
      "train their own, and reloading the page starts a new one.";
  }

  function fillChoices(select, names) {
    select.replaceChildren();
    for (const name of names || []) {
      const option = document.createElement("option");
      option.value = option.textContent = String(name);
      select.append(option);
    }
  }

  function playing(flag) {
    if (typeof flag !== "boolean") return;
    state.playing = flag;
    $("play").setAttribute("aria-pressed", String(flag));
    $("pause").setAttribute("aria-pressed", String(!flag));
  }

  // -- a new run ----------------------------------------------------------------------------------------------
  function showSetup(setup) {
    state.setup = setup;
    state.frame = null;
    state.losses = [];
    state.sample = 0;
    state.chosenName = state.chosenNode = null;
    if (setup.sample !== undefined) state.sample = setup.sample;
    fillForm(setup.config || {});
    buildNetwork(setup.network || {});
    const graph = setup.graph || {};
    showGraph(graph.svg || "", graph.note || "");
    $("legend").textContent = legend(setup);
  }

  function fillForm(config) {
    const set = (id, value) => { if (value !== undefined && value !== null) $(id).value = String(value); };
    set("dataset", config.dataset);
    set("hidden", Array.isArray(config.hidden) ? config.hidden.join(",") : config.hidden);
    set("activation", config.activation);
    set("loss-function", config.loss);
    set("optimizer", config.optimizer);
    set("lr", config.lr);
    set("batch", config.batch);
  }

  function legend(setup) {
    const task = setup.task || "";
    const [lo, hi] = valueRange();
    return task.startsWith("class") ? "Points: the samples (blue: class " + fmt(hi) + ", orange: class " + fmt(lo) +
      "); background: the network's output over the plane, white where it is " + fmt(setup.threshold) +
      ", the boundary. Click a point to select it." : "Points: the samples, coloured by their target (blue high, " +
      "orange low); background: the network's output over the plane, in the same colours. Click a point to select it.";
  }

  // -- frames -------------------------------------------------------------------------------------------------
  function takeFrame(frame) {
    state.frame = Object.assign({}, state.frame || {}, frame);
    if (Array.isArray(frame.loss_points)) for (const point of frame.loss_points) state.losses.push(point);
    if (state.losses.length > 20000) state.losses = state.losses.filter((_, i) => i % 2 === 0);
    state.pendingAcks += 1;
    if (!state.drawScheduled) {
      state.drawScheduled = true;
      requestAnimationFrame(() => {
        state.drawScheduled = false;
        draw(state.frame, state.losses);
        for (; state.pendingAcks > 0; state.pendingAcks--) send({ type: "ack" });
      });
    }
  }

  function draw(frame, losses) {
    if (!frame || !state.setup) return;
    $("step").textContent = String(frame.step);
    $("loss").textContent = fmt(frame.loss, 5);
    if (frame.sample && typeof frame.sample.index === "number") state.sample = frame.sample.index;
    drawBoundary(frame);
    drawLosses(losses, frame.step);
    drawNetwork(frame);
    drawGraph(frame.graph || {});
    chooseGraphNode(frame.weight && frame.weight.name);
    drawWeight(frame);
    drawSample();
  }

  // -- data and decision boundary ------------------------------------------------------------------------------
  function extent() {
    // the grid: size x size outputs, row r at the r-th of size even steps over x2, column c likewise over x1
    const grid = (state.setup && state.setup.grid) || {}, x = grid.x1 || [-1, 1], y = grid.x2 || [-1, 1];
    const n = grid.size || 1;
    return { x0: x[0], x1: x[1], y0: y[0], y1: y[1], nx: n, ny: n };
  }

  function valueRange() {
    const targets = (state.setup && state.setup.targets) || [];
    let lo = Infinity, hi = -Infinity;
    for (const t of targets) { const v = Array.isArray(t) ? t[0] : t; if (v < lo) lo = v; if (v > hi) hi = v; }
    return isFinite(lo) && hi > lo ? [lo, hi] : [0, 1];
  }

  function colour(value, lo, hi, strength) {
    if (typeof value !== "number" || !isFinite(value)) return [200, 200, 200];
    let t = 2 * (value - lo) / (hi - lo) - 1;
    t = Math.max(-1, Math.min(1, t));
    const base = t >= 0 ? POSITIVE : NEGATIVE, a = Math.abs(t) * strength;
    return base.map((c) => Math.round(255 + (c - 255) * a));
  }

  function toCanvas(point, canvas) {
    const e = extent();
    return [(point[0] - e.x0) / (e.x1 - e.x0) * canvas.width, (1 - (point[1] - e.y0) / (e.y1 - e.y0)) * canvas.height];
  }

  function drawBoundary(frame) {
    const canvas = $("boundary"), ctx = canvas.getContext("2d");
    const e = extent(), values = frame.boundary || [];
    const [lo, hi] = valueRange();
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (values.length === e.nx * e.ny && e.nx > 1) {
      const small = document.createElement("canvas");
      small.width = e.nx; small.height = e.ny;
      const sctx = small.getContext("2d"), image = sctx.createImageData(e.nx, e.ny);
      for (let iy = 0; iy < e.ny; iy++) {
        for (let ix = 0; ix < e.nx; ix++) {
          const rgb = colour(values[iy * e.nx + ix], lo, hi, 0.55), at = ((e.ny - 1 - iy) * e.nx + ix) * 4;
          image.data[at] = rgb[0]; image.data[at + 1] = rgb[1]; image.data[at + 2] = rgb[2]; image.data[at + 3] = 255;
        }
      }
      sctx.putImageData(image, 0, 0);
      ctx.imageSmoothingEnabled = true;
      // the grid's values sit at cell centres: stretch half a cell past each edge
      const cw = canvas.width / (e.nx - 1), ch = canvas.height / (e.ny - 1);
      ctx.drawImage(small, -cw / 2, -ch / 2, canvas.width + cw, canvas.height + ch);
    }
    const points = state.setup.points || [], targets = state.setup.targets || [];
    for (let i = 0; i < points.length; i++) {
      const [px, py] = toCanvas(points[i], canvas);
      const t = Array.isArray(targets[i]) ? targets[i][0] : targets[i];
      const rgb = colour(t, lo, hi, 1);
      ctx.beginPath();
      ctx.arc(px, py, 3.5, 0, 2 * Math.PI);
      ctx.fillStyle = "rgb(" + rgb.join(",") + ")";
      ctx.fill();
      ctx.lineWidth = 1; ctx.strokeStyle = "#fff"; ctx.stroke();
    }
    if (points[state.sample]) {
      const [px, py] = toCanvas(points[state.sample], canvas);
      ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI);
      ctx.lineWidth = 2.5; ctx.strokeStyle = "#111"; ctx.stroke();
    }
  }

  function pickSample(event) {
    if (!state.setup) return;
    const canvas = $("boundary"), box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * canvas.width / box.width, y = (event.clientY - box.top) * canvas.height / box.height;
    let best = -1, bestDistance = 12 * 12;
    (state.setup.points || []).forEach((point, i) => {
      const [px, py] = toCanvas(point, canvas), d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestDistance) { best = i; bestDistance = d; }
    });
    if (best < 0) return;
    if (state.replay) { alertText("A replay shows the sample that was selected while it was recorded."); return; }
    state.sample = best;
    act({ type: "sample", index: best });
  }

  function drawSample() {
    const points = state.setup.points || [], targets = state.setup.targets || [], i = state.sample;
    const names = state.setup.columns || ["x1", "x2", "target"];
    if (!points[i]) { $("sample-name").textContent = "–"; return; }
    const t = Array.isArray(targets[i]) ? targets[i][0] : targets[i];
    $("sample-name").textContent = i + " (" + names[0] + " = " + fmt(points[i][0], 4) + ", " + names[1] + " = " +
      fmt(points[i][1], 4) + ", " + names[2] + " = " + fmt(t, 4) + ")";
  }

  // -- loss curve ---------------------------------------------------------------------------------------------
  function drawLosses(losses, upTo) {
    const canvas = $("losscurve"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const shown = losses.filter((p) => p[0] <= upTo && typeof p[1] === "number" && isFinite(p[1]));
    if (shown.length < 1) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of shown) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    lo = Math.min(0, lo);
    if (hi <= lo) hi = lo + 1;
    const first = shown[0][0], last = Math.max(shown[shown.length - 1][0], first + 1);
    const pad = 28;
    ctx.strokeStyle = "#d8dde6"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, h - 14); ctx.lineTo(w - 4, h - 14); ctx.stroke();
    ctx.fillStyle = "#5b6475"; ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(fmt(hi, 3), 2, 12); ctx.fillText(fmt(lo, 3), 2, h - 16);
    ctx.fillText("step " + first, pad, h - 2);
    const lastLabel = "step " + last;
    ctx.fillText(lastLabel, w - 4 - ctx.measureText(lastLabel).width, h - 2);
    ctx.strokeStyle = "#0b7a53"; ctx.lineWidth = 1.5;
    ctx.beginPath();
    shown.forEach((p, k) => {
      const x = pad + (p[0] - first) / (last - first) * (w - pad - 6), y = 4 + (1 - (p[1] - lo) / (hi - lo)) * (h - 20);
      if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // -- the network --------------------------------------------------------------------------------------------
  function setIfChanged(el, name, value) { if (el.getAttribute(name) !== value) el.setAttribute(name, value); }
  function write(el, words) { if (el.textContent !== words) el.textContent = words; }

  function svg(name, attributes, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attributes || {})) el.setAttribute(k, String(v));
    if (parent) parent.append(el);
    return el;
  }

  function buildNetwork(network) {
    const root = $("network");
    root.replaceChildren();
    const sizes = network.sizes || [], names = network.units || [];
    const W = 640, H = 400, top = 34, bottom = 14;
    root.setAttribute("viewBox", "0 0 " + W + " " + H);
    const columns = sizes.map((n, l) => 36 + l * (W - 110) / Math.max(1, sizes.length - 1));
    const most = Math.max(1, ...sizes), gap = Math.min(40, (H - top - bottom) / most), r = Math.max(3, Math.min(10, gap * 0.38));
    const position = (l, j) => [columns[l], top + (H - top - bottom) / 2 + (j - (sizes[l] - 1) / 2) * gap];
    const bias = (l) => [columns[l], 12];
    const lines = svg("g", {}, root), hits = svg("g", {}, root), units = svg("g", {}, root);
    state.lines = []; state.hits = []; state.units = [];
    // weight.layer: the layer of the unit it feeds (1: the first hidden layer); from: a unit of the layer
    // before, or null for a bias (drawn from a "1" above the layer before)
    (network.weights || []).forEach((weight, k) => {
      const l = weight.layer, from = weight.from === null || weight.from === undefined ? bias(l - 1) : position(l - 1, weight.from);
      const to = position(l, weight.to);
      const at = { x1: from[0], y1: from[1], x2: to[0], y2: to[1] };
      const line = svg("line", Object.assign({ class: "weight" }, at), lines);
      svg("title", {}, line).textContent = weight.name;
      const hit = svg("line", Object.assign({ class: "hit" }, at), hits);
      svg("title", {}, hit).textContent = weight.name;
      hit.addEventListener("click", () => selectWeight(weight.name));
      line.addEventListener("click", () => selectWeight(weight.name));
      state.lines.push(line); state.hits.push(hit);
    });
    sizes.forEach((n, l) => {
      if (l < sizes.length - 1 && (network.weights || []).some((w) => w.layer === l + 1 && (w.from === null || w.from === undefined))) {
        const [bx, by] = bias(l);
        svg("rect", { x: bx - 7, y: by - 7, width: 14, height: 14, rx: 3, fill: "#fff", class: "unit" }, units);
        svg("text", { x: bx, y: by + 3, "text-anchor": "middle" }, units).textContent = "1";
      }
      const row = [];
      for (let j = 0; j < n; j++) {
        const [x, y] = position(l, j), name = (names[l] || [])[j] || "";
        const circle = svg("circle", { cx: x, cy: y, r: r, fill: "#fff", class: "unit" }, units);
        const title = svg("title", {}, circle);
        title.textContent = name;
        const value = n <= 16 ? svg("text", { x: x + r + 3, y: y + 3, class: "value" }, units) : null;
        if (n <= 8 && name) svg("text", { x: x, y: y - r - 3, "text-anchor": "middle", class: "name" }, units).textContent = name;
        row.push({ circle: circle, title: title, value: value, name: name });
      }
      state.units.push(row);
    });
  }

  function selectWeight(name) {
    if (state.replay) { alertText("A replay shows the weight that was selected while it was recorded."); return; }
    act({ type: "weight", name: name });
  }

  function activationRows(frame) {
    const a = frame.activations, sizes = (state.setup.network || {}).sizes || [];
    if (!a) return [];
    if (Array.isArray(a) && a.length && Array.isArray(a[0])) {
      if (a.length === sizes.length) return a;
      const point = (state.setup.points || [])[state.sample] || [];
      return [point].concat(a);
    }
    if (Array.isArray(a)) {  // flat, in layout order
      const rows = []; let k = 0;
      for (const n of sizes) { rows.push(a.slice(k, k + n)); k += n; }
      return rows;
    }
    if (typeof a === "object") {
      const names = (state.setup.network || {}).units || [];
      return names.map((layer) => layer.map((name) => a[name]));
    }
    return [];
  }

  function drawNetwork(frame) {
    const showGrads = $("show-grads").checked;
    const numbers = (showGrads ? frame.grads : frame.weights) || [];
    let most = 0;
    for (const v of numbers) if (typeof v === "number" && isFinite(v)) most = Math.max(most, Math.abs(v));
    const selected = frame.weight ? frame.weight.name : null;
    const weights = (state.setup.network || {}).weights || [];
    state.lines.forEach((line, k) => {
      const v = numbers[k];
      const size = typeof v === "number" && most > 0 ? Math.abs(v) / most : 0;
      const shownValue = showGrads ? -v : v;  // gradients: the direction a step moves the weight
      setIfChanged(line, "stroke", shownValue >= 0 ? POSITIVE_CSS : NEGATIVE_CSS);
      setIfChanged(line, "stroke-width", (0.5 + Math.round(16 * Math.sqrt(size)) / 4).toString());  // quarter pixels
      const chosen = Boolean(weights[k] && weights[k].name === selected);
      if (line.classList.contains("selected") !== chosen) line.classList.toggle("selected", chosen);

    });
    const rows = activationRows(frame);
    state.units.forEach((row, l) => {
      const values = rows[l] || [];
      let scale = 1;
      for (const v of values) if (typeof v === "number" && isFinite(v)) scale = Math.max(scale, Math.abs(v));
      row.forEach((unit, j) => {
        const v = values[j];
        setIfChanged(unit.circle, "fill", "rgb(" + colour(v, -scale, scale, 0.9).join(",") + ")");
        unit.title.textContent = unit.name + " = " + fmt(v);
        if (unit.value) write(unit.value, fmt(v, 3));
      });
    });
  }

  // -- the selected sample's graph ----------------------------------------------------------------------------
  function showGraph(text, note) {
    const holder = $("graph");
    holder.replaceChildren();
    state.graphNodes = new Map();
    state.inView = new Set();
    if (state.observer) state.observer.disconnect();
    if (!text) { holder.textContent = note || "(no picture of the graph)"; return; }
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = parsed.documentElement;
    if (!root || root.namespaceURI !== SVG || root.localName !== "svg" || parsed.querySelector("parsererror")) {
      holder.textContent = "(the graph picture could not be read)";
      return;
    }
    clean(root);
    const shown = document.importNode(root, true);
    for (const el of shown.querySelectorAll("[data-graph-id]")) state.graphNodes.set(el.getAttribute("data-graph-id"), el);
    holder.append(shown);
    // a large graph: only the nodes and edges in view (or near it) are written each frame
    state.observer = new IntersectionObserver((entries) => {
      const appeared = [];
      for (const entry of entries) {
        const id = entry.target.getAttribute("data-graph-id");
        if (entry.isIntersecting) { state.inView.add(id); appeared.push(id); } else state.inView.delete(id);
      }
      if (state.frame && state.frame.graph) drawGraph(state.frame.graph, appeared);
    }, { root: holder, rootMargin: "100px" });
    for (const [id, el] of state.graphNodes) if (/^(v\d+|e\d+_\d+)$/.test(id)) state.observer.observe(el);
  }

  function chooseGraphNode(name) {
    // the selected weight's box in the graph: outlined, and scrolled into the view once per selection
    if (!name || state.chosenName === name) return;
    state.chosenName = name;
    if (state.chosenNode) state.chosenNode.classList.remove("chosen");
    state.chosenNode = null;
    for (const el of state.graphNodes.values()) {
      if (!el.classList.contains("node")) continue;
      const label = el.querySelector("text");
      if (label && label.textContent === name) { state.chosenNode = el; break; }
    }
    if (!state.chosenNode) return;
    state.chosenNode.classList.add("chosen");
    const holder = $("graph"), box = state.chosenNode.getBoundingClientRect(), frame = holder.getBoundingClientRect();
    holder.scrollLeft += box.left - frame.left - holder.clientWidth / 3;
    holder.scrollTop += box.top - frame.top - holder.clientHeight / 3;
  }

  function clean(root) {
    // what a picture may not carry into the page: scripts, foreign content, event handlers, outside links
    for (const el of Array.from(root.querySelectorAll("script, foreignObject, iframe, object, embed, style"))) el.remove();
    for (const el of [root, ...root.querySelectorAll("*")]) {
      if (el.namespaceURI !== SVG) { el.remove(); continue; }
      for (const attribute of Array.from(el.attributes)) {
        const name = attribute.name.toLowerCase(), value = attribute.value.trim();
        if (name.startsWith("on") || name === "style" && /url\(|expression/i.test(value)) el.removeAttribute(attribute.name);
        else if ((name === "href" || name === "xlink:href") && !value.startsWith("#")) el.removeAttribute(attribute.name);
        else if (/url\(/i.test(value)) el.setAttribute(attribute.name, value.replace(/url\(\s*#/gi, "url(#graph-"));
      }
      if (el.hasAttribute("id")) {  // the picture's ids, apart from the page's own
        el.setAttribute("data-graph-id", el.id);
        el.id = "graph-" + el.id;
      }
      for (const name of ["href", "xlink:href"]) {
        const value = el.getAttribute(name);
        if (value && value.startsWith("#")) el.setAttribute(name, "#graph-" + value.slice(1));
      }
    }
  }

  function fixed(x) {  // the picture's own format, .4f
    return typeof x === "number" && isFinite(x) ? x.toFixed(4).replace(/^-(0\.0+)$/, "$1") : "–";
  }

  function drawGraph(values, ids) {
    // a value node v{i}: [data, grad], written in its "data ..." and "grad ..." lines; an input edge
    // e{i}_{k}: [local, upstream], written as "local" and "× upstream = contribution"
    for (const id of ids || state.inView) {
      const el = state.graphNodes.get(id), pair = values[id];
      if (!el || !Array.isArray(pair)) continue;
      const texts = el.querySelectorAll("text");
      if (id.startsWith("e")) {
        if (texts.length >= 2) {
          write(texts[0], fixed(pair[0]));
          write(texts[1], "× " + fixed(pair[1]) + " = " + fixed(pair[0] * pair[1]));
        }
        continue;
      }
      for (const text of texts) {
        const words = text.textContent;
        if (words.startsWith("data ")) write(text, "data " + fixed(pair[0]));
        else if (words.startsWith("grad ")) write(text, "grad " + fixed(pair[1]));
      }
    }
  }

  // -- the selected weight ------------------------------------------------------------------------------------
  function drawWeight(frame) {
    const w = frame.weight || {};
    $("w-name").textContent = w.name || "–";
    $("w-value").textContent = fmt(w.value);
    $("w-grad").textContent = fmt(w.grad);
    $("w-update").textContent = signed(w.update);
    const d = frame.derivation || {};
    $("derivation").textContent = Array.isArray(d.text) ? d.text.join("\n") : String(d.text || "");
  }

  // -- controls -----------------------------------------------------------------------------------------------
  function readOptions() {
    const hiddenText = $("hidden").value.trim();
    const parts = hiddenText === "" ? [] : hiddenText.split(",").map((s) => s.trim());
    const hidden = parts.every((s) => /^\d+$/.test(s)) ? parts.map(Number) : hiddenText;
    const options = {
      dataset: $("dataset").value, hidden: hidden, activation: $("activation").value,
      loss: $("loss-function").value, optimizer: $("optimizer").value,
      lr: numberOr($("lr").value), batch: numberOr($("batch").value),
    };
    const seed = ((state.setup || {}).config || {}).seed;
    if (typeof seed === "number") options.seed = seed;
    // a loss that does not fit the dataset's task gives way to the task's default
    const o = state.options || {}, task = (o.tasks || {})[options.dataset], fits = (o.losses || {})[task];
    if (!task || (Array.isArray(fits) && !fits.includes(options.loss))) delete options.loss;
    // the batch size: the new data's own default unless it was changed by hand
    if (state.setup && options.batch === (state.setup.config || {}).batch && options.dataset !== state.setup.config.dataset) {
      delete options.batch;
    }
    return options;
  }

  function numberOr(text) {
    const n = Number(text);
    return text.trim() !== "" && isFinite(n) ? n : text;
  }

  function configure() {
    const options = readOptions();
    if (options.dataset === "csv") {
      const file = $("csv").files[0];
      if (!file) { alertText("Choose a CSV file first (the CSV file input), or another dataset."); return; }
      const limit = csvLimit();
      if (file.size > limit) {
        alertText("The CSV file is " + file.size + " bytes; the playground takes files up to " + limit + " bytes.");
        return;
      }
      file.text().then((text) => { options.csv = text; act({ type: "configure", options: options }); });
      return;
    }
    act({ type: "configure", options: options });
  }

  function csvLimit() {
    const csv = (state.options && state.options.csv) || {};
    return csv.max_bytes || 100000;
  }

  function speedChanged() {
    const speed = SPEEDS[Number($("speed").value)];
    $("speed-shown").textContent = speed ? speed + " steps/s" : "as fast as it goes";
    if (!state.replay) send({ type: "speed", value: speed });
    else if (state.timer) { stopReplay(); startReplay(); }
  }

  function wireControls() {
    $("play").addEventListener("click", () => (state.replay ? startReplay() : act({ type: "play" })));
    $("pause").addEventListener("click", () => (state.replay ? stopReplay() : act({ type: "pause" })));
    $("step-once").addEventListener("click", () => (state.replay ? showReplay(state.replayAt + 1) : act({ type: "step" })));
    $("reset").addEventListener("click", () => (state.replay ? showReplay(0) : act({ type: "reset" })));
    $("download").addEventListener("click", download);
    for (const id of ["dataset", "hidden", "activation", "loss-function", "optimizer", "batch", "csv"]) {
      $(id).addEventListener("change", () => {
        if (id === "csv" && $("csv").files.length) $("dataset").value = "csv";
        configure();
      });
    }
    $("lr").addEventListener("change", () => act({ type: "lr", value: numberOr($("lr").value) }));
    $("speed").addEventListener("input", speedChanged);
    $("show-grads").addEventListener("change", () => {
      if (state.frame) drawNetwork(state.replay ? frameAt(state.replayAt) : state.frame);
    });
    $("boundary").addEventListener("click", pickSample);
  }

  function download() {
    if (!state.replayLink) return;
    const a = document.createElement("a");
    a.href = state.replayLink;
    a.download = "";  // the name the server gives: microgd-playground-step-N.html
    document.body.append(a);
    a.click();
    a.remove();
  }

  // -- a replay file ------------------------------------------------------------------------------------------
  function frameAt(i) {
    const frames = state.replay.frames, merged = {};
    for (let k = 0; k <= i; k++) Object.assign(merged, frames[k]);
    return merged;
  }

  function showReplay(i) {
    const frames = state.replay.frames;
    i = Math.max(0, Math.min(frames.length - 1, i));
    state.replayAt = i;
    $("slider").value = String(i);
    state.frame = frameAt(i);
    draw(state.frame, state.replay.losses);
  }

  function startReplay() {
    if (state.timer) return;
    if (state.replayAt >= state.replay.frames.length - 1) showReplay(0);
    const speed = SPEEDS[Number($("speed").value)] || 1000, every = replayEvery();
    const interval = Math.max(40, 1000 * every / speed);
    state.timer = setInterval(() => {
      if (state.replayAt >= state.replay.frames.length - 1) stopReplay();
      else showReplay(state.replayAt + 1);
    }, interval);
    playing(true);
  }

  function stopReplay() {
    clearInterval(state.timer);
    state.timer = null;
    playing(false);
  }

  function replayEvery() {
    const frames = state.replay.frames;
    return frames.length > 1 ? Math.max(1, (frames[frames.length - 1].step - frames[0].step) / (frames.length - 1)) : 1;
  }

  function startReplayPage(data) {
    state.replay = data;
    $("replay-controls").hidden = false;
    $("download").hidden = true;
    const config = data.setup.config || {};
    state.options = { dataset: [config.dataset], activation: [config.activation], loss: [config.loss], optimizer: [config.optimizer] };
    fillChoices($("dataset"), state.options.dataset);
    fillChoices($("activation"), state.options.activation);
    fillChoices($("loss-function"), state.options.loss);
    fillChoices($("optimizer"), state.options.optimizer);
    for (const el of document.querySelectorAll("#settings select, #settings input:not(#speed)")) el.disabled = true;
    showSetup(data.setup);
    const slider = $("slider");
    slider.max = String(Math.max(0, data.frames.length - 1));
    slider.addEventListener("input", () => { stopReplay(); showReplay(Number(slider.value)); });
    const last = data.frames.length ? data.frames[data.frames.length - 1].step : 0;
    $("note").textContent = "A recorded run: " + data.frames.length + " frames up to step " + last +
      ". Move the slider, or press Play.";
    showReplay(data.frames.length - 1);
  }

  // -- start --------------------------------------------------------------------------------------------------
  // for tests and scripts driving the page: where sample i is drawn, in CSS pixels from the canvas's corner
  window.microgdPlayground = Object.freeze({
    samplePosition: (i) => {
      const canvas = $("boundary"), box = canvas.getBoundingClientRect();
      const [x, y] = toCanvas(state.setup.points[i], canvas);
      return [x * box.width / canvas.width, y * box.height / canvas.height];
    },
  });
  wireControls();
  speedChanged();
  const embedded = $("replay-data");
  if (embedded) startReplayPage(JSON.parse(embedded.textContent));
  else connect();
})();
