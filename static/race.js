/* Robot Race: the race page (/game/<id>): HUD, countdown, leaderboard, messages and input.
 * Vanilla JS, no build step. Needs draw.js (the drawing), track.js (the eased canvas track) and
 * socket.js (the connection) loaded first; starts only when the page has a #track canvas. */
"use strict";

(function (global) {
  var RR = global.RobotRace;
  var MAX_PLAYERS = RR.MAX_PLAYERS;

  /* The race needs 2 robots whose players are here (a robot without `connected` counts). */
  function enoughHere(robots) {
    var here = (robots || []).filter(function (r) { return r && r.connected !== false; });
    return here.length >= 2;
  }
  RR.enoughHere = enoughHere;

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
      startHint: $("start-hint"),
      waitingStart: $("waiting-start"),
      winner: $("winner"),
      winnerName: $("winner-name"),
      leaderboardTitle: $("leaderboard-title"),
      leaderboard: $("leaderboard"),
      leave: $("leave"),
      leaveAgain: $("leave-again"),
      playAgain: $("play-again"),
      waitingAgain: $("waiting-again"),
      connection: $("connection"),
      roomFull: $("room-full"),
      message: $("message")
    };

    var gameId = root.getAttribute("data-game-id") || "";
    var myId = root.getAttribute("data-robot-id") || "";
    var isAdmin = root.getAttribute("data-admin") === "true";
    // the big-screen view (/watch/<id>): the same page, read only
    var spectator = root.getAttribute("data-spectator") === "true";
    var leaving = false;     // this player pressed Leave: go once the server has it
    var wasIn = false;       // our robot has been in a view (so its absence means removed)

    var game = null;
    var track = null;        // RobotRace.raceTrack(...): the canvas, drawn as the game moves
    var goUntil = 0;         // show "Go!" until this time (ms)
    var goTimer = 0;
    var messageTimer = 0;
    var conn = null;         // RobotRace.connect(...), once the page is set up

    if (el.inviteLink) {
      el.inviteLink.value = location.origin + "/join/" + gameId;
      el.inviteLink.addEventListener("blur", showInviteEnd);
      global.addEventListener("resize", showInviteEnd);
    }

    // the end of the invite link (the game id) is what matters: keep it in view in the field
    function showInviteEnd() {
      if (el.inviteLink && !el.invite.hidden) el.inviteLink.scrollLeft = el.inviteLink.scrollWidth;
    }

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
      var canStart = enoughHere(robots);
      if (el.startCountdown) {
        el.startCountdown.disabled = !canStart;
        el.startCountdown.setAttribute("aria-describedby", canStart ? "" : "start-hint");
      }
      show(el.startHint, setup && isAdmin && !canStart);
      if (setup && isAdmin) showInviteEnd();
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

    function adminOf(g) {
      var robots = (g && g.robots) || [];
      for (var i = 0; i < robots.length; i++) {
        if (robots[i].admin) return robots[i];
      }
      return null;
    }

    function mine(g) {
      var robots = (g && g.robots) || [];
      for (var i = 0; i < robots.length; i++) {
        if (robots[i].id === myId) return robots[i];
      }
      return null;
    }

    // Presence, hand-over and leaving, as the server decided them (PROTOCOL.md, "presence").
    function followPlayers(prev, next) {
      if (spectator || !myId) return;
      var me = mine(next);
      if (!me) {
        if (leaving) { location.href = "/"; return; }
        if (wasIn) {
          showMessage("You were away too long and left the game. Join again?", 0);
          setTimeout(function () { location.href = "/join/" + gameId; }, 2500);
        }
        return;
      }
      wasIn = true;
      if (leaving && me.connected === false) { location.href = "/"; return; }
      isAdmin = !!me.admin;
      var before = adminOf(prev);
      var after = adminOf(next);
      if (prev && before && after && before.id !== after.id) {
        showMessage(after.id === myId ? "You are the host now" :
          String(after.name) + " is the host now", 4000);
      }
    }

    function applyGame(g) {
      var prevState = game ? game.state : null;
      var prevGame = game;
      game = g;
      followPlayers(prevGame, g);
      track.follow(game);
      updateUI(prevState);
      track.requestDraw();
    }

    function copyOf(obj) {
      var out = {};
      for (var key in obj) {
        if (Object.prototype.hasOwnProperty.call(obj, key)) out[key] = obj[key];
      }
      return out;
    }

    // A `scores` frame: every robot's score in the lane order of the last full view. Anything
    // else (a win, a join, a state change) only ever comes as a full game_update, so the winner
    // and the state stay those of the last full view. Returns false (not drawn) when it does not
    // fit that view, so that the next full update is not mistaken for an old one.
    function applyScores(scores) {
      if (!game || !Array.isArray(scores)) return false;
      var robots = game.robots || [];
      if (scores.length !== robots.length) return false;
      for (var i = 0; i < scores.length; i++) {
        if (typeof scores[i] !== "number" || !isFinite(scores[i])) return false;
      }
      var next = copyOf(game);
      next.robots = robots.map(function (r, j) {
        var copy = copyOf(r);
        copy.score = scores[j];
        return copy;
      });
      applyGame(next);
      return true;
    }

    // ---------- drawing

    track = RR.raceTrack(canvas, el, {
      game: function () { return game; },
      myId: function () { return myId; },
      spectator: spectator
    });

    // ---------- messages

    function setConnected(ok) {
      show(el.connection, !ok);
      if (ok) show(el.roomFull, false);
    }

    // The big screen's server has all the spectators it takes: say so while it retries.
    function setRoomFull() {
      show(el.connection, false);
      show(el.roomFull, true);
    }

    function send(obj) {
      return conn ? conn.send(obj) : false;
    }

    function handleMessage(msg) {
      switch (msg.type) {
        case "welcome":
          if (msg.robot_id != null) myId = String(msg.robot_id);
          if (typeof msg.admin === "boolean") isAdmin = msg.admin;
          if (msg.game && typeof msg.game === "object") applyGame(msg.game);
          break;
        case "game_update":
          applyGame(msg.game);
          break;
        case "scores":
          return applyScores(msg.scores);
        case "error":
          showMessage(String(msg.message || msg.error || "Error"), 3000);
          break;
        case "terminated":
          setConnected(true);
          showMessage("This game has ended", 0);
          // the lobby says why (ended for lack of play)
          setTimeout(function () { location.href = "/?ended=idle"; }, 2000);
          break;
        default:
          break; // unknown types are ignored
      }
      return true;
    }

    // ---------- input

    function press() {
      if (spectator) return;
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
    function leave() {
      if (!send({ type: "leave" })) {
        showMessage("Not connected: try again in a moment", 3000);
        return;
      }
      leaving = true;
      showMessage("Leaving…", 0);
      // the server's answer takes us to the lobby; if it does not come, go anyway
      setTimeout(function () { location.href = "/"; }, 3000);
    }
    onClick(el.leave, leave);
    onClick(el.leaveAgain, leave);

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
    RR.current = function () {
      return { game: game, robotId: myId, admin: isAdmin, spectator: spectator,
        lastVersion: conn ? conn.lastVersion() : -Infinity,
        connected: !!(conn && conn.connected()) };
    };

    conn = RR.connect(gameId, {
      onMessage: handleMessage,
      onStatus: setConnected,
      onEnded: function () {
        showMessage("This game has ended", 0);
        location.href = "/?ended=gone";
      },
      onRefused: function () { location.href = spectator ? "/" : "/join/" + gameId; },
      onFull: setRoomFull,
      watch: spectator
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startRace);
  } else {
    startRace();
  }
})(window);
