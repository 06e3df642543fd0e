// Search the archive in the browser: words, area, economy, kind.
// Everything shown comes from search.json as text (textContent), never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("search");
  if (!form) { return; }
  var root = form.getAttribute("data-root");
  var status = document.getElementById("status");
  var results = document.getElementById("results");
  var fields = ["q", "area", "economy", "kind"];
  var cases = null;
  var shownFor = null;
  var SHOWN = 100;

  // Lower case, compatibility forms decomposed (NFKD), combining marks
  // removed: "promperu" finds PROMPERÚ. search_folded in archive/site.py
  // folds the index the same way.
  function fold(text) {
    return text.toLowerCase().normalize("NFKD").replace(/\p{M}/gu, "");
  }

  function optionText(select, value) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) { return select.options[i].text; }
    }
    return value;
  }

  function fetchJson(url) {
    return fetch(url).then(function (response) {
      if (!response.ok) { throw new Error(url + ": " + response.status); }
      return response.json();
    });
  }

  function load() {
    return fetchJson(form.getAttribute("data-index")).then(function (index) {
      var older = (index.older || []).map(function (path) { return fetchJson(root + path); });
      return Promise.all(older).then(function (shards) {
        var all = index.cases.slice();
        shards.forEach(function (shard) { all = all.concat(shard.cases); });
        all.forEach(function (c) {
          c.haystack = c.words || fold([c.id, c.title, c.organization, c.text].join(" "));
        });
        all.sort(function (a, b) { return a.date < b.date ? 1 : a.date > b.date ? -1 : 0; });
        return all;
      });
    });
  }

  function matches(c, words, area, economy, kind) {
    if (area && c.area !== area) { return false; }
    if (economy && c.economy !== economy) { return false; }
    if (kind && c.kind !== kind) { return false; }
    return words.every(function (w) { return c.haystack.indexOf(w) !== -1; });
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function show() {
    var words = fold(form.q.value).split(/\s+/).filter(Boolean);
    var area = form.area.value, economy = form.economy.value, kind = form.kind.value;
    // The text box also fires "change" when it loses focus, e.g. on the
    // mouse-down of a click on a result: redrawing then would swallow the click.
    var key = JSON.stringify([words, area, economy, kind]);
    if (key === shownFor) { return; }
    shownFor = key;
    var found = cases.filter(function (c) { return matches(c, words, area, economy, kind); });
    results.textContent = "";
    found.slice(0, SHOWN).forEach(function (c) {
      var item = element("li", "case-card");
      var heading = element("h2", "case-title");
      var link = element("a", "", c.title);
      link.href = root + c.url;
      heading.appendChild(link);
      item.appendChild(heading);
      item.appendChild(element("p", "meta", [
        optionText(form.kind, c.kind), optionText(form.economy, c.economy),
        optionText(form.area, c.area), c.date
      ].join(" · ")));
      if (c.organization) { item.appendChild(element("p", "org", c.organization)); }
      item.appendChild(element("p", "excerpt", c.text));
      results.appendChild(item);
    });
    var count = found.length === 1 ? "1 case found" : found.length + " cases found";
    status.textContent = found.length > SHOWN ? count + "; the first " + SHOWN + " are shown." : count + ".";
  }

  function remember() {
    var params = new URLSearchParams();
    fields.forEach(function (name) { if (form[name].value) { params.set(name, form[name].value); } });
    var query = params.toString();
    history.replaceState(null, "", query ? "?" + query : location.pathname);
  }

  var initial = new URLSearchParams(location.search);
  fields.forEach(function (name) { if (initial.get(name)) { form[name].value = initial.get(name); } });
  status.textContent = "Loading the cases…";
  load().then(function (all) {
    cases = all;
    show();
    form.addEventListener("input", function () { show(); remember(); });
    form.addEventListener("change", function () { show(); remember(); });
    form.addEventListener("submit", function (event) { event.preventDefault(); show(); remember(); });
  }).catch(function () {
    status.textContent = "The search index could not be loaded. Browse by priority area or economy instead.";
  });
})();
