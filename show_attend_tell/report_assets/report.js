// sat compare report: gallery, filters, attention maps and chart hover. Plain DOM, no framework.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var PAGE_SIZE = 24;
  var FILTERS = [
    ["all", "all", function () { return true; }],
    ["wrong", "any run wrong", function (item) { return wrongCount(item) > 0; }],
    ["disagree", "runs disagree", function (item) { return disagree(item); }],
    ["one-wrong", "one run wrong", function (item) { return wrongCount(item) === 1; }]
  ];
  var state = { filter: "all", query: [], page: 0, current: -1, visible: [] };
  var pinned = {};  // image id -> {run, word}
  var alphaCache = {};  // "id/run" -> Uint8Array

  function wrongCount(item) {
    return item.runs.filter(function (r) { return r && r.ok === false; }).length;
  }
  function disagree(item) {
    var seen = {};
    item.runs.forEach(function (r) { if (r) seen[r.w.join(" ")] = true; });
    return Object.keys(seen).length > 1;
  }
  function matches(item) {
    if (!state.query.length) return true;
    return state.query.every(function (term) {
      return item.runs.some(function (r) {
        return r && r.w.some(function (w) { return w.toLowerCase().indexOf(term) === 0; });
      });
    });
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---------------------------------------------------------------- attention
  function quantised(item, run) {
    var key = item.id + "/" + run;
    if (!alphaCache[key]) {
      var raw = atob(item.runs[run].a.q), bytes = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
      alphaCache[key] = bytes;
    }
    return alphaCache[key];
  }
  // One canvas pixel per attention cell, scaled smoothly over the image: a black veil whose
  // opacity is 255 - q (q = 255 at the word's peak), so attended cells show the image through.
  function showAttention(card, item, run, word) {
    var canvas = card.querySelector("canvas"), cell = card.querySelector(".cell");
    var label = card.querySelector(".label");
    card.querySelectorAll("button.word.shown").forEach(function (b) { b.classList.remove("shown"); });
    var entry = run === null ? null : item.runs[run];
    if (!entry || !entry.a) {
      canvas.hidden = true; cell.hidden = true; label.hidden = true;
      delete canvas.dataset.run; delete canvas.dataset.word;
      return;
    }
    var cells = entry.a.cells, side = Math.round(Math.sqrt(cells)), q = quantised(item, run);
    canvas.width = side; canvas.height = side;
    var ctx = canvas.getContext("2d"), image = ctx.createImageData(side, side);
    for (var i = 0; i < cells; i++) image.data[4 * i + 3] = 255 - q[word * cells + i];
    ctx.putImageData(image, 0, 0);
    canvas.hidden = false;
    canvas.dataset.run = run; canvas.dataset.word = word;
    var hard = DATA.runs[run].attention === "hard" && entry.loc && entry.loc.length > word;
    if (hard) {
      var at = entry.loc[word];
      cell.style.left = (100 * (at % side) / side) + "%";
      cell.style.top = (100 * Math.floor(at / side) / side) + "%";
      cell.style.width = cell.style.height = (100 / side) + "%";
      cell.dataset.cell = at;
    }
    cell.hidden = !hard;
    label.textContent = DATA.runs[run].name + ": “" + entry.w[word] + "” (peak α " +
      entry.a.peak[word].toFixed(3) + (hard ? ", cell " + entry.loc[word] : "") + ")";
    label.hidden = false;
    var button = card.querySelector('button.word[data-run="' + run + '"][data-word="' + word + '"]');
    if (button) button.classList.add("shown");
  }
  function unpin(card) {
    var item = itemOf(card);
    delete pinned[item.id];
    card.querySelectorAll("button.word.pinned").forEach(function (b) { b.classList.remove("pinned"); });
    restore(card, item);
  }
  function restore(card, item) {
    var pin = pinned[item.id];
    if (pin) showAttention(card, item, pin.run, pin.word); else showAttention(card, item, null, 0);
  }

  // ---------------------------------------------------------------- cards
  function captionLine(item, run) {
    var entry = item.runs[run], line = el("div", { "class": "caption", "data-run": run });
    line.appendChild(el("span", { "class": "run", style: "color:" + DATA.runs[run].colour },
                        DATA.runs[run].name));
    if (!entry) { line.appendChild(el("span", { "class": "meta" }, "(not evaluated)")); return line; }
    if (entry.ok === true || entry.ok === false) {
      line.appendChild(el("span", { "class": "verdict " + (entry.ok ? "ok" : "bad"),
                                    title: entry.ok ? "scene named exactly" : "scene named wrongly" },
                          entry.ok ? "✓" : "✗"));
    }
    entry.w.forEach(function (word, index) {
      var mark = entry.m ? entry.m[index] : "";
      var button = el("button", { type: "button", "class": "word" + (mark ? " " + mark : ""),
                                  "data-run": run, "data-word": index }, "");
      var hit = state.query.some(function (t) { return word.toLowerCase().indexOf(t) === 0; });
      if (hit) button.appendChild(el("mark", {}, word)); else button.textContent = word;
      if (mark) button.title = { hit: "in the scene; attention on it", off: "in the scene; attention elsewhere",
                                 ok: "in the scene (several alike)", bad: "not in the scene" }[mark];
      if (!entry.a) button.disabled = true;
      var pin = pinned[item.id];
      if (pin && pin.run === run && pin.word === index) button.classList.add("pinned");
      line.appendChild(button);
      line.appendChild(document.createTextNode(" "));
    });
    if (entry.missed && entry.missed.length) {
      line.appendChild(el("span", { "class": "missed" }, "missed: " + entry.missed.join(", ")));
    }
    return line;
  }
  function card(item, position) {
    var node = el("article", { "class": "card", tabindex: "-1", "data-id": item.id,
                               "data-position": position });
    var frame = el("div", { "class": "frame" });
    if (item.src) {
      frame.appendChild(el("img", { src: item.src, alt: "test image " + item.id, loading: "lazy",
                                    width: "192", height: "192" }));
    } else {
      frame.appendChild(el("div", { "class": "noimage" }, "image " + item.id + " not exported"));
    }
    var canvas = el("canvas", { "class": "heat", "aria-hidden": "true" }); canvas.hidden = true;
    var cell = el("div", { "class": "cell" }); cell.hidden = true;
    var label = el("div", { "class": "label" }); label.hidden = true;
    frame.appendChild(canvas); frame.appendChild(cell); frame.appendChild(label);
    node.appendChild(frame);
    node.appendChild(el("p", { "class": "meta" }, "image " + item.id +
      (item.objects ? " · scene: " + item.objects.join(", ") : "")));
    item.runs.forEach(function (_, run) { node.appendChild(captionLine(item, run)); });
    return node;
  }

  // ---------------------------------------------------------------- filtering and paging
  function recompute() {
    var test = FILTERS.filter(function (f) { return f[0] === state.filter; })[0][2];
    state.visible = [];
    DATA.images.forEach(function (item, index) { if (test(item) && matches(item)) state.visible.push(index); });
    var pages = Math.max(1, Math.ceil(state.visible.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    state.current = -1;
  }
  function render() {
    var cards = document.getElementById("cards");
    cards.textContent = "";
    var start = state.page * PAGE_SIZE, end = Math.min(state.visible.length, start + PAGE_SIZE);
    var fragment = document.createDocumentFragment();
    for (var i = start; i < end; i++) {
      var item = DATA.images[state.visible[i]], node = card(item, i);
      fragment.appendChild(node);
      if (pinned[item.id]) restore(node, item);
    }
    cards.appendChild(fragment);
    var pages = Math.max(1, Math.ceil(state.visible.length / PAGE_SIZE));
    document.getElementById("page").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    document.getElementById("count").textContent = state.visible.length
      ? (start + 1) + "–" + end + " of " + state.visible.length + " images"
      : "no image matches";
  }
  function update() { recompute(); render(); }
  function cardAt(position) {
    return document.querySelector('.card[data-position="' + position + '"]');
  }
  function select(position) {
    if (!state.visible.length) return;
    position = Math.max(0, Math.min(state.visible.length - 1, position));
    var page = Math.floor(position / PAGE_SIZE);
    if (page !== state.page) { state.page = page; render(); }
    document.querySelectorAll(".card.current").forEach(function (c) { c.classList.remove("current"); });
    state.current = position;
    var node = cardAt(position);
    node.classList.add("current");
    node.focus({ preventScroll: true });
    node.scrollIntoView({ block: "nearest" });
  }
  function itemOf(node) {
    var id = Number(node.closest(".card").dataset.id);
    return DATA.images.filter(function (item) { return item.id === id; })[0];
  }

  // ---------------------------------------------------------------- controls
  function setupControls() {
    var box = document.getElementById("filters");
    FILTERS.forEach(function (f) {
      var count = DATA.images.filter(f[2]).length;
      var needsGrades = f[0] === "wrong" || f[0] === "one-wrong";
      var disabled = needsGrades && !DATA.graded;
      var label = el("label", { "class": disabled ? "disabled" : "" });
      var input = el("input", { type: "radio", name: "filter", value: f[0] });
      if (f[0] === "all") input.checked = true;
      if (disabled) { input.disabled = true; label.title = "needs a dataset with known objects (shapes)"; }
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + f[1] + " (" + (disabled ? "–" : count) + ")"));
      box.appendChild(label);
    });
    box.addEventListener("change", function (event) {
      state.filter = event.target.value; state.page = 0; update();
    });
    document.getElementById("search").addEventListener("input", function (event) {
      state.query = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
      state.page = 0; update();
    });
    document.getElementById("prev").addEventListener("click", function () { state.page--; render(); });
    document.getElementById("next").addEventListener("click", function () { state.page++; render(); });
    document.getElementById("controls").hidden = false;

    var cards = document.getElementById("cards");
    cards.addEventListener("mouseover", function (event) {
      var word = event.target.closest("button.word");
      if (!word || word.disabled) return;
      showAttention(word.closest(".card"), itemOf(word), Number(word.dataset.run), Number(word.dataset.word));
    });
    cards.addEventListener("mouseout", function (event) {
      var word = event.target.closest("button.word");
      if (word && !(event.relatedTarget && word.contains(event.relatedTarget))) {
        restore(word.closest(".card"), itemOf(word));
      }
    });
    cards.addEventListener("focusin", function (event) {
      var word = event.target.closest("button.word");
      if (word) showAttention(word.closest(".card"), itemOf(word), Number(word.dataset.run), Number(word.dataset.word));
    });
    cards.addEventListener("click", function (event) {
      var word = event.target.closest("button.word");
      if (!word) return;
      var node = word.closest(".card"), item = itemOf(word);
      var run = Number(word.dataset.run), index = Number(word.dataset.word), pin = pinned[item.id];
      node.querySelectorAll("button.word.pinned").forEach(function (b) { b.classList.remove("pinned"); });
      if (pin && pin.run === run && pin.word === index) {
        delete pinned[item.id];
      } else {
        pinned[item.id] = { run: run, word: index };
        word.classList.add("pinned");
      }
      restore(node, item);
      state.current = Number(node.dataset.position);
    });
    document.addEventListener("keydown", function (event) {
      if (event.target.tagName === "INPUT" || event.altKey || event.ctrlKey || event.metaKey) {
        if (event.key === "Escape") event.target.blur();
        return;
      }
      var word = document.activeElement && document.activeElement.closest &&
        document.activeElement.closest("button.word");
      if (event.key === "j") select(state.current + 1);
      else if (event.key === "k") select(Math.max(0, state.current - 1));
      else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && word) {
        var step = event.key === "ArrowRight" ? 1 : -1;
        var next = word.parentNode.querySelector('button.word[data-word="' + (Number(word.dataset.word) + step) + '"]');
        if (next) next.focus();
      } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        var current = cardAt(state.current);
        var first = current && current.querySelector("button.word:not([disabled])");
        if (first) first.focus(); else select(state.current + 1);
      } else if (event.key === "PageDown" || event.key === "PageUp") {
        var pages = Math.max(1, Math.ceil(state.visible.length / PAGE_SIZE));
        state.page = Math.max(0, Math.min(pages - 1, state.page + (event.key === "PageDown" ? 1 : -1)));
        render();
      } else if (event.key === "/") {
        document.getElementById("search").focus();
      } else if (event.key === "Escape") {
        var focused = document.activeElement && document.activeElement.closest &&
          document.activeElement.closest(".card");
        if (focused) unpin(focused);
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  // ---------------------------------------------------------------- charts
  // Hovering a chart shows every run's value at the nearest logged step.
  function setupCharts() {
    var readout = document.querySelector(".chart-readout");
    document.querySelectorAll("svg.chart").forEach(function (svg) {
      var plot = svg.querySelector("rect.plot");
      var cursor = document.createElementNS("http://www.w3.org/2000/svg", "line");
      cursor.setAttribute("class", "cursor");
      cursor.setAttribute("y1", plot.getAttribute("y"));
      cursor.setAttribute("y2", Number(plot.getAttribute("y")) + Number(plot.getAttribute("height")));
      cursor.style.display = "none";
      svg.appendChild(cursor);
      svg.addEventListener("mousemove", function (event) {
        var box = svg.getBoundingClientRect(), view = svg.viewBox.baseVal;
        var x = (event.clientX - box.left) * view.width / box.width;
        var parts = [];
        svg.querySelectorAll("g.series").forEach(function (group) {
          var best = null;
          group.querySelectorAll("circle").forEach(function (c) {
            c.classList.remove("near");
            if (!best || Math.abs(c.cx.baseVal.value - x) < Math.abs(best.cx.baseVal.value - x)) best = c;
          });
          if (best) {
            best.classList.add("near");
            parts.push(best.querySelector("title").textContent);
          }
        });
        var first = svg.querySelector("circle.near");
        if (first) {
          cursor.setAttribute("x1", first.cx.baseVal.value); cursor.setAttribute("x2", first.cx.baseVal.value);
          cursor.style.display = "";
        }
        readout.textContent = svg.dataset.key + " — " + parts.join(" · ");
      });
      svg.addEventListener("mouseleave", function () {
        cursor.style.display = "none";
        svg.querySelectorAll("circle.near").forEach(function (c) { c.classList.remove("near"); });
      });
    });
  }

  setupControls();
  setupCharts();
  update();
  window.satReport = { data: DATA, state: state, select: select };
})();
