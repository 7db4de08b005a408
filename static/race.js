/* Robot Race: the race page (canvas track, WebSocket client) and the shared robot drawing.
 * Vanilla JS, no build step. Loaded on the lobby too, where it only provides RobotRace.* for
 * lobby.js; the race itself starts only when the page has a #track canvas. */
"use strict";

(function (global) {
  var COLORS = ["#00ffff", "#ff00ff", "#ffff00", "#ffffff"];
  var FONT = '"Press Start 2P", ui-monospace, "Courier New", monospace';
  var MAX_PLAYERS = 10;
  var BG = "#07070d";

  function colorFor(index) {
    return COLORS[((index % COLORS.length) + COLORS.length) % COLORS.length];
  }

  /* One robot: a glowing square with an antenna, two eyes and a mouth, centred on (x, y).
   * opts: {you: bool (white outline), winner: bool (stronger glow), glow: number} */
  function drawRobot(ctx, x, y, size, color, opts) {
    opts = opts || {};
    var s = Math.max(6, Math.round(size));
    var left = Math.round(x - s / 2);
    var top = Math.round(y - s / 2);
    var px = Math.max(1, Math.round(s / 10));
    // shadowBlur ignores the transform: scale it by the devicePixelRatio set in fitCanvas
    var zoom = ctx.getTransform ? ctx.getTransform().a || 1 : 1;
    ctx.save();
    ctx.shadowColor = color;
    ctx.shadowBlur = (opts.glow != null ? opts.glow : s * (opts.winner ? 1.2 : 0.7)) * zoom;
    ctx.fillStyle = color;
    // antenna
    ctx.fillRect(left + Math.round(s / 2 - px / 2), top - px * 3, px, px * 3);
    ctx.fillRect(left + Math.round(s / 2 - px * 1.5), top - px * 4, px * 3, px * 2);
    // body (drawn twice for a brighter neon glow)
    ctx.fillRect(left, top, s, s);
    ctx.fillRect(left, top, s, s);
    ctx.shadowBlur = 0;
    // face
    ctx.fillStyle = BG;
    var eye = Math.max(2, Math.round(s * 0.2));
    var eyeY = top + Math.round(s * 0.28);
    ctx.fillRect(left + Math.round(s * 0.2), eyeY, eye, eye);
    ctx.fillRect(left + s - Math.round(s * 0.2) - eye, eyeY, eye, eye);
    ctx.fillRect(left + Math.round(s * 0.25), top + Math.round(s * 0.68), s - 2 * Math.round(s * 0.25),
      Math.max(1, Math.round(s * 0.09)));
    if (opts.you) {
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 2;
      ctx.shadowColor = "#ffffff";
      ctx.shadowBlur = 8 * zoom;
      var pad = Math.max(4, Math.round(s * 0.18));
      ctx.strokeRect(left - pad + 0.5, top - pad - px * 4 + 0.5, s + pad * 2 - 1, s + pad * 2 + px * 4 - 1);
    }
    ctx.restore();
  }

  /* Fit a label to maxWidth: shrink the font down to minPx, then cut the text. */
  function fitText(ctx, text, maxWidth, px, minPx) {
    var size = px;
    ctx.font = size + "px " + FONT;
    while (ctx.measureText(text).width > maxWidth && size > minPx) {
      size -= 1;
      ctx.font = size + "px " + FONT;
    }
    var out = text;
    if (ctx.measureText(out).width > maxWidth) {
      while (out.length > 1 && ctx.measureText(out + "..").width > maxWidth) {
        out = out.slice(0, -1);
      }
      out += "..";
    }
    return { text: out, size: size };
  }

  function drawLabel(ctx, text, x, y, maxWidth, px, color, baseline) {
    var fit = fitText(ctx, text, maxWidth, px, Math.min(px, 6));
    ctx.save();
    ctx.font = fit.size + "px " + FONT;
    ctx.textAlign = "center";
    ctx.textBaseline = baseline || "top";
    ctx.fillStyle = color;
    ctx.shadowColor = color;
    ctx.shadowBlur = 6;
    ctx.fillText(fit.text, Math.round(x), Math.round(y));
    ctx.restore();
  }

  /* The whole track. lanes: [{name, progress 0..1, color, you, winner}] in join order.
   * opts: {finishY, time (ms, for the finish line shimmer)} — all sizes in CSS pixels. */
  function drawScene(ctx, w, h, lanes, opts) {
    opts = opts || {};
    var n = Math.max(1, lanes.length);
    var laneW = w / n;
    var finishY = Math.round(opts.finishY != null ? opts.finishY : Math.max(40, h * 0.1));

    ctx.save();
    ctx.fillStyle = BG;
    ctx.fillRect(0, 0, w, h);

    // faint retro grid
    ctx.strokeStyle = "rgba(0, 255, 255, 0.06)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    var step = 32;
    for (var gy = h; gy > 0; gy -= step) {
      ctx.moveTo(0, Math.round(gy) + 0.5);
      ctx.lineTo(w, Math.round(gy) + 0.5);
    }
    ctx.stroke();

    // lane separators
    ctx.strokeStyle = "rgba(255, 255, 255, 0.12)";
    ctx.setLineDash([6, 8]);
    ctx.beginPath();
    for (var i = 1; i < n; i++) {
      var lx = Math.round(i * laneW) + 0.5;
      ctx.moveTo(lx, finishY);
      ctx.lineTo(lx, h);
    }
    ctx.stroke();
    ctx.setLineDash([]);

    // label size: 10px on wide screens, 8px on phones; stagger two rows when names would collide
    var px = w >= 560 ? 10 : 8;
    ctx.font = px + "px " + FONT;
    var stagger = false;
    for (var k = 0; k < lanes.length; k++) {
      if (ctx.measureText(String(lanes[k].name || "")).width > laneW * 0.92) { stagger = n > 1; break; }
    }
    var labelMax = stagger ? laneW * 1.85 : laneW * 0.92;
    var rowH = px + 6;
    var bottomPad = 12 + rowH * (stagger ? 2 : 1) + (opts.bottomInset || 0);

    var size = Math.max(12, Math.min(44, laneW * 0.5, (h - finishY - bottomPad) * 0.12));
    var yBottom = h - bottomPad - size / 2;
    var yTop = finishY;
    var travel = Math.max(0, yBottom - yTop);

    // own lane highlight
    for (var a = 0; a < lanes.length; a++) {
      if (lanes[a].you) {
        ctx.fillStyle = "rgba(255, 255, 255, 0.05)";
        ctx.fillRect(Math.round(a * laneW), finishY, Math.round(laneW), h - finishY);
      }
    }

    // finish line: a checkered strip with a magenta glow
    var cell = 6;
    ctx.shadowColor = "#ff00ff";
    ctx.shadowBlur = 12;
    ctx.fillStyle = "#ff00ff";
    ctx.fillRect(0, finishY - 1, w, 2);
    ctx.shadowBlur = 0;
    for (var cx = 0, c = 0; cx < w; cx += cell, c++) {
      ctx.fillStyle = c % 2 === 0 ? "rgba(255,255,255,0.85)" : "rgba(0,0,0,0.85)";
      ctx.fillRect(cx, finishY - cell - 1, cell, cell);
      ctx.fillStyle = c % 2 === 1 ? "rgba(255,255,255,0.85)" : "rgba(0,0,0,0.85)";
      ctx.fillRect(cx, finishY - cell * 2 - 1, cell, cell);
    }

    for (var j = 0; j < lanes.length; j++) {
      var lane = lanes[j];
      var color = lane.color || colorFor(j);
      var p = Math.max(0, Math.min(1, Number(lane.progress) || 0));
      var x = laneW * (j + 0.5);
      var y = yBottom - p * travel;

      // trail from the start to the robot
      if (y < yBottom - 1) {
        var grad = ctx.createLinearGradient(0, yBottom, 0, y);
        grad.addColorStop(0, "rgba(0,0,0,0)");
        grad.addColorStop(1, color);
        ctx.globalAlpha = 0.45;
        ctx.fillStyle = grad;
        var tw = Math.max(2, Math.round(size * 0.18));
        ctx.fillRect(Math.round(x - tw / 2), y, tw, yBottom - y);
        ctx.globalAlpha = 1;
      }

      drawRobot(ctx, x, y, size, color, { you: lane.you, winner: lane.winner });

      // name under the robot (two staggered rows when lanes are narrow)
      var row = stagger ? j % 2 : 0;
      var pad = lane.you ? Math.max(4, Math.round(size * 0.18)) : 0;
      var ny = y + size / 2 + 8 + row * rowH + pad;
      drawLabel(ctx, String(lane.name || ""), x, ny, labelMax, px, color, "top");

      // "YOU" / "WIN!" above it, or under the name when the robot is up at the finish line
      var above = lane.winner ? (lane.you ? "YOU WIN!" : "WIN!") : (lane.you ? "YOU" : "");
      if (above) {
        var antenna = Math.max(1, Math.round(size / 10)) * 4;
        var ay = y - size / 2 - antenna - pad - 5;
        var tagColor = lane.winner ? "#ffff00" : "#ffffff";
        if (ay - px < finishY + 4) {
          drawLabel(ctx, above, x, ny + rowH * (stagger ? 2 : 1), Math.max(laneW * 0.95, 40), px, tagColor, "top");
        } else {
          drawLabel(ctx, above, x, ay, Math.max(laneW * 0.95, 40), px, tagColor, "bottom");
        }
      }
    }
    ctx.restore();
    return { finishY: finishY, yBottom: yBottom, size: size };
  }

  /* Size a canvas to its CSS box at devicePixelRatio; returns the CSS size. */
  function fitCanvas(canvas) {
    var dpr = global.devicePixelRatio || 1;
    var w = canvas.clientWidth || global.innerWidth;
    var h = canvas.clientHeight || global.innerHeight;
    var bw = Math.max(1, Math.round(w * dpr));
    var bh = Math.max(1, Math.round(h * dpr));
    if (canvas.width !== bw) canvas.width = bw;
    if (canvas.height !== bh) canvas.height = bh;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(bw / w, 0, 0, bh / h, 0, 0);
    return { w: w, h: h, ctx: ctx };
  }

  function whenFontReady(cb) {
    if (global.document && document.fonts && document.fonts.load) {
      document.fonts.load('10px "Press Start 2P"').then(cb, function () {});
    }
  }

  global.RobotRace = {
    COLORS: COLORS,
    FONT: FONT,
    MAX_PLAYERS: MAX_PLAYERS,
    colorFor: colorFor,
    drawRobot: drawRobot,
    drawScene: drawScene,
    fitCanvas: fitCanvas,
    whenFontReady: whenFontReady
  };

  // ---------------------------------------------------------------- the race page

  function startRace() {
    var canvas = document.getElementById("track");
    var root = document.querySelector("[data-game-id]");
    if (!canvas || !root) return;

    var $ = function (id) { return document.getElementById(id); };
    var el = {
      hud: document.querySelector(".hud"),
      status: $("status"),
      players: $("players"),
      hint: $("hint"),
      countdown: $("countdown"),
      setupPanel: $("setup-panel"),
      invite: $("invite"),
      inviteLink: $("invite-link"),
      copyInvite: $("copy-invite"),
      startCountdown: $("start-countdown"),
      waitingStart: $("waiting-start"),
      winner: $("winner"),
      winnerName: $("winner-name"),
      leaderboardTitle: $("leaderboard-title"),
      leaderboard: $("leaderboard"),
      playAgain: $("play-again"),
      waitingAgain: $("waiting-again"),
      connection: $("connection"),
      message: $("message")
    };

    var gameId = root.getAttribute("data-game-id") || "";
    var myId = root.getAttribute("data-robot-id") || "";
    var isAdmin = root.getAttribute("data-admin") === "true";

    var game = null;
    var lastVersion = -Infinity;
    var shown = {};          // robot id -> displayed progress (0..1), eased toward the score
    var goUntil = 0;         // show "Go!" until this time (ms)
    var goTimer = 0;
    var messageTimer = 0;
    var terminated = false;

    var ws = null;
    var attempt = 0;           // reconnect attempts since the last good connection
    var refusedStreak = 0;     // sockets in a row that closed before any message
    var checking = false;
    var gameExists = false;    // the API said the game exists while we were being refused
    var reconnectTimer = 0;
    var live = false;          // a socket is open and the server has spoken on it

    if (el.inviteLink) el.inviteLink.value = location.origin + "/join/" + gameId;

    // ---------- UI

    function setText(node, text) {
      if (node && node.textContent !== text) node.textContent = text;
    }

    function show(node, visible) {
      if (node) node.hidden = !visible;
    }

    function showMessage(text, ms) {
      setText(el.message, text);
      show(el.message, true);
      clearTimeout(messageTimer);
      if (ms !== 0) {
        messageTimer = setTimeout(function () { show(el.message, false); }, ms || 3000);
      }
    }

    function robotName(id) {
      if (!game) return "";
      var robots = game.robots || [];
      for (var i = 0; i < robots.length; i++) {
        if (robots[i].id === id) return String(robots[i].name);
      }
      var board = game.leaderboard || [];
      for (var j = 0; j < board.length; j++) {
        if (board[j].robot_id === id) return String(board[j].name);
      }
      return "";
    }

    function showCountdown(text, isGo) {
      if (el.countdown.textContent !== text) {
        el.countdown.textContent = text;
        // restart the pop animation
        el.countdown.style.animation = "none";
        void el.countdown.offsetWidth;
        el.countdown.style.animation = "";
      }
      el.countdown.classList.toggle("go", !!isGo);
      show(el.countdown, true);
    }

    function updateUI(prevState) {
      var state = game.state;
      var robots = game.robots || [];
      setText(el.players, "Players " + robots.length + "/" + MAX_PLAYERS);

      var setup = state === "setup";
      show(el.setupPanel, setup);
      show(el.invite, setup && isAdmin);
      show(el.startCountdown, setup && isAdmin);
      show(el.waitingStart, setup && !isAdmin);
      show(el.hint, setup || state === "counting_down");

      clearTimeout(goTimer);
      if (state === "setup") {
        setText(el.status, isAdmin ? "Invite players" : "Get ready");
        show(el.countdown, false);
        goUntil = 0;
      } else if (state === "counting_down") {
        var n = Number(game.countdown) || 0;
        var label = n > 0 ? String(n) : "Go!";
        setText(el.status, label);
        showCountdown(label, n <= 0);
      } else if (state === "playing") {
        var now = Date.now();
        if (prevState === "counting_down" || prevState === "setup") goUntil = now + 1000;
        if (now < goUntil) {
          setText(el.status, "Go!");
          showCountdown("Go!", true);
          goTimer = setTimeout(function () {
            if (game && game.state === "playing") {
              setText(el.status, "Race!");
              show(el.countdown, false);
            }
          }, goUntil - now);
        } else {
          setText(el.status, "Race!");
          show(el.countdown, false);
        }
      } else if (state === "finished") {
        show(el.countdown, false);
        var name = robotName(game.winner);
        var line = name ? name + " wins!" : "Race over!";
        setText(el.status, line);
        setText(el.winnerName, line);
        renderLeaderboard(game.leaderboard || []);
      } else {
        show(el.countdown, false);
      }
      show(el.winner, state === "finished");
      show(el.playAgain, state === "finished" && isAdmin);
      show(el.waitingAgain, state === "finished" && !isAdmin);
    }

    function renderLeaderboard(board) {
      var list = el.leaderboard;
      while (list.firstChild) list.removeChild(list.firstChild);
      for (var i = 0; i < board.length; i++) {
        var entry = board[i] || {};
        var li = document.createElement("li");
        var wins = Number(entry.wins) || 0;
        li.textContent = String(entry.name) + " \u2014 " + wins + (wins === 1 ? " win" : " wins");
        if (entry.robot_id === myId) li.className = "neon-cyan";
        list.appendChild(li);
      }
      show(el.leaderboardTitle, board.length > 0);
      show(list, board.length > 0);
    }

    function applyGame(g) {
      var prevState = game ? game.state : null;
      game = g;
      var robots = game.robots || [];
      var target = Number(game.winning_score) || 1;
      var seen = {};
      for (var i = 0; i < robots.length; i++) {
        var id = robots[i].id;
        var p = Math.max(0, Math.min(1, (Number(robots[i].score) || 0) / target));
        seen[id] = true;
        // new robots, and scores that went down (play again, server restart), jump straight there
        if (!(id in shown) || p < shown[id]) shown[id] = p;
      }
      for (var key in shown) {
        if (!seen[key]) delete shown[key];
      }
      updateUI(prevState);
      requestDraw();
    }

    // ---------- drawing

    var rafId = 0;
    var lastT = 0;

    function requestDraw() {
      if (!rafId) rafId = requestAnimationFrame(frame);
    }

    function frame(t) {
      rafId = 0;
      var dt = lastT ? Math.min(0.1, (t - lastT) / 1000) : 1 / 60;
      lastT = t;
      var moving = step(dt);
      draw();
      if (moving) requestDraw();
      else lastT = 0;
    }

    // ease the displayed progress toward the real score; the end position is exact
    function step(dt) {
      if (!game) return false;
      var robots = game.robots || [];
      var target = Number(game.winning_score) || 1;
      var k = 1 - Math.exp(-dt * 14);
      var moving = false;
      for (var i = 0; i < robots.length; i++) {
        var id = robots[i].id;
        var goal = Math.max(0, Math.min(1, (Number(robots[i].score) || 0) / target));
        var cur = id in shown ? shown[id] : goal;
        var next = cur + (goal - cur) * k;
        if (Math.abs(goal - next) < 0.0015) next = goal;
        else moving = true;
        shown[id] = next;
      }
      return moving;
    }

    function draw() {
      var fit = fitCanvas(canvas);
      var robots = game ? game.robots || [] : [];
      var finished = game && game.state === "finished";
      var lanes = robots.map(function (r, i) {
        return {
          name: r.name,
          progress: r.id in shown ? shown[r.id] : 0,
          color: colorFor(i),
          you: r.id === myId,
          winner: finished && game.winner === r.id
        };
      });
      var hudH = el.hud ? el.hud.offsetHeight : 60;
      drawScene(fit.ctx, fit.w, fit.h, lanes, { finishY: Math.max(hudH + 20, 48) });
    }

    if (global.ResizeObserver) {
      new ResizeObserver(requestDraw).observe(canvas);
    }
    global.addEventListener("resize", requestDraw);
    whenFontReady(requestDraw);
    requestDraw();

    // ---------- WebSocket

    function wsUrl() {
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/" + gameId;
    }

    function setConnected(ok) {
      show(el.connection, !ok);
    }

    function send(obj) {
      if (ws && ws.readyState === 1) {
        ws.send(JSON.stringify(obj));
        return true;
      }
      return false;
    }

    function connect() {
      if (terminated) return;
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
          setConnected(true);
        }
        handleMessage(ev.data);
      };
      sock.onclose = function () {
        if (ws !== sock) return;
        ws = null;
        live = false;
        if (terminated) return;
        if (!received) refusedStreak++;
        setConnected(false);
        scheduleReconnect();
      };
      sock.onerror = function () { /* a close event follows */ };
    }

    function scheduleReconnect() {
      if (terminated || reconnectTimer) return;
      if (refusedStreak >= 5) {
        if (gameExists) {
          // the game is there but this player keeps being refused: join it again
          terminated = true;
          location.href = "/join/" + gameId;
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

    function checkGame() {
      if (checking || !global.fetch) return;
      checking = true;
      refusedStreak = 0;
      fetch("/api/games/" + gameId, { cache: "no-store", credentials: "same-origin" })
        .then(function (res) {
          if (res.status === 404) {
            terminated = true;
            clearTimeout(reconnectTimer);
            showMessage("This game has ended", 0);
            location.href = "/";
          } else if (res.ok && !live) {
            // refused while the game exists; if the next tries fail too, go to the join page
            gameExists = true;
            refusedStreak = 4;
          }
        }, function () { /* server unreachable: keep trying */ })
        .then(function () { checking = false; });
    }

    function reconnectNow() {
      if (terminated || ws) return;
      attempt = 0;
      connect();
    }
    global.addEventListener("online", reconnectNow);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") reconnectNow();
    });

    function handleMessage(data) {
      if (typeof data !== "string") return;
      var msg;
      try { msg = JSON.parse(data); } catch (e) { return; }
      if (!msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "welcome":
          if (msg.robot_id != null) myId = String(msg.robot_id);
          if (typeof msg.admin === "boolean") isAdmin = msg.admin;
          if (msg.game && typeof msg.game === "object") {
            // the server may have restarted: its version is the new baseline
            lastVersion = Number(msg.game.version) || 0;
            applyGame(msg.game);
          }
          break;
        case "game_update":
          if (msg.game && typeof msg.game === "object") {
            var v = Number(msg.game.version);
            if (v > lastVersion) {
              lastVersion = v;
              applyGame(msg.game);
            }
          }
          break;
        case "error":
          showMessage(String(msg.message || msg.error || "Error"), 3000);
          break;
        case "terminated":
          terminated = true;
          clearTimeout(reconnectTimer);
          setConnected(true);
          showMessage("This game has ended", 0);
          if (ws) {
            var s = ws;
            ws = null;
            try { s.close(); } catch (e) { /* ignore */ }
          }
          setTimeout(function () { location.href = "/"; }, 2000);
          break;
        default:
          break; // unknown types are ignored
      }
    }

    // ---------- input

    function press() {
      if (game && game.state === "playing") send({ type: "score_point" });
    }

    function isSpace(e) {
      return e.code === "Space" || e.key === " " || e.key === "Spacebar" || e.keyCode === 32;
    }

    function isTyping(target) {
      if (!target || !target.tagName) return false;
      var tag = target.tagName;
      return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
    }

    document.addEventListener("keydown", function (e) {
      // no page scroll and no button activation by the space bar
      if (isSpace(e) && !isTyping(e.target)) e.preventDefault();
    });
    document.addEventListener("keyup", function (e) {
      if (!isSpace(e) || isTyping(e.target)) return;
      e.preventDefault();
      press();
    });
    // a touch sends one press; preventDefault stops zoom, scroll and the emulated mouse events
    canvas.addEventListener("touchstart", function (e) {
      e.preventDefault();
      press();
    }, { passive: false });
    canvas.addEventListener("mousedown", function (e) {
      if (e.button === 0) press();
    });

    function onClick(node, fn) {
      if (!node) return;
      node.addEventListener("click", function (e) {
        e.preventDefault();
        fn();
        node.blur();
      });
    }

    onClick(el.startCountdown, function () { send({ type: "start_countdown" }); });
    onClick(el.playAgain, function () { send({ type: "play_again" }); });

    var copyTimer = 0;
    onClick(el.copyInvite, function () {
      var text = el.inviteLink.value;
      var done = function (ok) {
        setText(el.copyInvite, ok ? "Copied!" : "Press Ctrl+C to copy");
        if (!ok) { el.inviteLink.focus(); el.inviteLink.select(); }
        clearTimeout(copyTimer);
        copyTimer = setTimeout(function () { setText(el.copyInvite, "Copy invite link"); }, 2000);
      };
      // the old way: select the field and copy; works on plain http too
      var fallback = function () {
        var ok = false;
        try {
          el.inviteLink.focus();
          el.inviteLink.select();
          el.inviteLink.setSelectionRange(0, text.length);
          ok = document.execCommand("copy");
        } catch (e) { ok = false; }
        el.inviteLink.blur();
        done(ok);
      };
      if (navigator.clipboard && navigator.clipboard.writeText && global.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
      } else {
        fallback();
      }
    });

    // a test/debug hook (read only)
    global.RobotRace.current = function () {
      return { game: game, robotId: myId, admin: isAdmin, lastVersion: lastVersion,
        connected: !!(ws && ws.readyState === 1) };
    };

    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startRace);
  } else {
    startRace();
  }
})(window);
