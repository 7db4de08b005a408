/* Robot Race: the live /_stats page. Polls the JSON form of the same route every few seconds
 * and shows the number of games created, large. Vanilla JS, no build step. */
"use strict";

(function (global) {
  var big = document.getElementById("games-created");
  if (!big || !global.fetch) return;
  var active = document.getElementById("games-active");
  var scope = document.getElementById("stats-scope");
  var live = document.getElementById("stats-updated");
  var EVERY = 3000;

  function set(node, value) {
    var text = String(value);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function poll() {
    fetch("/_stats", { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (s) {
        if (!s || typeof s.games_created !== "number") return;
        set(big, s.games_created);
        if (typeof s.games_active === "number") set(active, s.games_active);
        if (s.scope === "cluster") set(scope, "every server");
        else if (s.scope === "node") set(scope, "this server");
        if (live) live.hidden = false;
      }, function () { /* the server is restarting: try again at the next tick */ })
      .then(function () { setTimeout(poll, EVERY); });
  }

  poll();
})(window);
