/* Robot Race: the race page's connection to the server (see PROTOCOL.md, "WebSocket").
 * Vanilla JS, no build step; load it before race.js. Provides
 *
 *   var conn = RobotRace.connect(gameId, {
 *     onMessage: function (msg) {},  // every parsed message, in order, after the version check;
 *                                    // return false for a game_update/scores the page did not
 *                                    // draw (the version is then not taken as drawn)
 *     onStatus: function (ok) {},    // true once the server speaks on a socket, false when it closes
 *     onEnded: function () {},       // the API says the game is gone (404): reconnecting stopped
 *     onRefused: function () {},     // the game exists but this player keeps being refused
 *     onFull: function (secs) {},    // spectators: this server's room is full (503 room_full);
 *                                    // retrying after about `secs` seconds
 *     watch: false                   // true: a spectator's socket (/ws/<id>?watch=1, no token)
 *   });
 *   conn.send(obj) -> bool; conn.connected() -> bool; conn.lastVersion() -> number; conn.close()
 *
 * It reconnects with backoff, checks the game through the API after repeated refusals (a
 * spectator refused because the server's room is full is told so and retries, longer),
 * reconnects at once when the tab becomes visible or the browser goes online, and drops every
 * game_update or scores frame whose version is not higher than the last one drawn. A
 * `terminated` message stops it (it is still passed on). */
"use strict";

(function (global) {
  var RR = global.RobotRace || (global.RobotRace = {});

  RR.connect = function (gameId, handlers) {
    handlers = handlers || {};

    var ws = null;
    var stopped = false;       // terminated, ended, or closed by the page: no more reconnecting
    var attempt = 0;           // reconnect attempts since the last good connection
    var refusedStreak = 0;     // sockets in a row that closed before any message
    var checking = false;
    var gameExists = false;    // the API said the game exists while we were being refused
    var reconnectTimer = 0;
    var live = false;          // a socket is open and the server has spoken on it
    var lastVersion = -Infinity;

    function call(name, arg) {
      var fn = handlers[name];
      return typeof fn === "function" ? fn(arg) : undefined;
    }

    // A page opened as /game/<id>?token=… (a bot's or a test's link, no cookie) passes its
    // token on to the socket; only that URL carries it, never a link the page shows.
    var token = "";
    try {
      token = new URLSearchParams(location.search).get("token") || "";
    } catch (e) { token = ""; }

    function wsUrl() {
      var query = handlers.watch ? "?watch=1" : (token ? "?token=" + encodeURIComponent(token) : "");
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/" + gameId +
        query;
    }

    function send(obj) {
      if (ws && ws.readyState === 1) {
        ws.send(JSON.stringify(obj));
        return true;
      }
      return false;
    }

    function stop() {
      stopped = true;
      clearTimeout(reconnectTimer);
      reconnectTimer = 0;
      if (ws) {
        var s = ws;
        ws = null;
        live = false;
        try { s.close(); } catch (e) { /* ignore */ }
      }
    }

    function connect() {
      if (stopped) return;
      clearTimeout(reconnectTimer);
      reconnectTimer = 0;
      var sock;
      try {
        sock = new WebSocket(wsUrl());
      } catch (e) {
        refusedStreak++;
        scheduleReconnect();
        return;
      }
      ws = sock;
      var received = false;
      sock.onmessage = function (ev) {
        if (ws !== sock) return;
        if (!received) {
          received = true;
          attempt = 0;
          refusedStreak = 0;
          gameExists = false;
          live = true;
          call("onStatus", true);
        }
        handleMessage(ev.data);
      };
      sock.onclose = function () {
        if (ws !== sock) return;
        ws = null;
        live = false;
        if (stopped) return;
        call("onStatus", false);
        if (!received && handlers.watch) {
          checkRoom();
          return;
        }
        if (!received) refusedStreak++;
        scheduleReconnect();
      };
      sock.onerror = function () { /* a close event follows */ };
    }

    function scheduleReconnect() {
      if (stopped || reconnectTimer) return;
      if (refusedStreak >= 5) {
        if (gameExists) {
          // the game is there but this player keeps being refused: let the page join it again
          stop();
          call("onRefused");
          return;
        }
        checkGame();
      }
      var base = Math.min(8000, 500 * Math.pow(2, attempt));
      attempt++;
      var delay = base * (0.5 + Math.random() * 0.5);
      reconnectTimer = setTimeout(function () {
        reconnectTimer = 0;
        connect();
      }, delay);
    }

    // A browser cannot see why a WebSocket was refused. A spectator's refused socket asks
    // again with a plain GET, which gets the same answer: 503 room_full (with Retry-After)
    // while this server has all the spectators it takes, else 400 (not a WebSocket request).
    function checkRoom() {
      if (!global.fetch) {
        refusedStreak++;
        scheduleReconnect();
        return;
      }
      fetch("/ws/" + gameId + "?watch=1", { cache: "no-store", credentials: "same-origin" })
        .then(function (res) {
          if (res.status !== 503) return null;
          var secs = Number(res.headers.get("Retry-After")) || 5;
          return res.json().then(function (body) {
            return body && body.error === "room_full" ? secs : null;
          }, function () { return null; });
        }, function () { return null; })
        .then(function (fullFor) {
          if (stopped || ws || reconnectTimer) return;
          if (fullFor == null) {
            refusedStreak++;
            scheduleReconnect();
            return;
          }
          // Full: wait at least what the server asks, longer after each refusal (up to a
          // minute), with jitter so that a full room's screens do not come back at once.
          call("onFull", fullFor);
          var base = Math.min(60000, Math.max(fullFor * 1000, 1000 * Math.pow(2, attempt)));
          attempt++;
          reconnectTimer = setTimeout(function () {
            reconnectTimer = 0;
            connect();
          }, base * (1 + Math.random() * 0.5));
        });
    }

    function checkGame() {
      if (checking || !global.fetch) return;
      checking = true;
      refusedStreak = 0;
      fetch("/api/games/" + gameId, { cache: "no-store", credentials: "same-origin" })
        .then(function (res) {
          if (stopped) return;
          if (res.status === 404) {
            stop();
            call("onEnded");
          } else if (res.ok && !live) {
            // refused while the game exists; if the next tries fail too, go to the join page
            gameExists = true;
            refusedStreak = 4;
          }
        }, function () { /* server unreachable: keep trying */ })
        .then(function () { checking = false; });
    }

    function reconnectNow() {
      if (stopped || ws) return;
      attempt = 0;
      connect();
    }
    global.addEventListener("online", reconnectNow);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") reconnectNow();
    });

    // Passes on a versioned message if it is newer than the last drawn; the version counts as
    // drawn unless the handler returns false.
    function deliverVersioned(msg, version) {
      if (!(version > lastVersion)) return;
      if (call("onMessage", msg) !== false) lastVersion = version;
    }

    function handleMessage(data) {
      if (typeof data !== "string") return;
      var msg;
      try { msg = JSON.parse(data); } catch (e) { return; }
      if (!msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "welcome":
          if (msg.game && typeof msg.game === "object") {
            // the server may have restarted: its version is the new baseline
            lastVersion = Number(msg.game.version) || 0;
          }
          call("onMessage", msg);
          break;
        case "game_update":
          if (msg.game && typeof msg.game === "object") deliverVersioned(msg, Number(msg.game.version));
          break;
        case "scores":
          deliverVersioned(msg, Number(msg.version));
          break;
        case "going_away":
          // the server is stopping: close from our side, so every press sent so far still
          // counts, and reconnect (to another server) as after any close
          if (ws) {
            try { ws.close(1000, "server going away"); } catch (e) { /* closing anyway */ }
          }
          break;
        case "terminated":
          stop();
          call("onMessage", msg);
          break;
        default:
          call("onMessage", msg); // errors; unknown types are the page's to ignore
          break;
      }
    }

    connect();

    return {
      send: send,
      close: stop,
      connected: function () { return !!(ws && ws.readyState === 1); },
      lastVersion: function () { return lastVersion; }
    };
  };
})(window);
