/* Robot Race: the race page's track: each robot's progress eased toward its score and drawn
 * (with draw.js) on animation frames while anything moves, and the setup panel placed clear of
 * the robots. Vanilla JS, no build step. Needs draw.js loaded first; used by race.js. */
"use strict";

(function (global) {
  var RR = global.RobotRace;
  var colorFor = RR.colorFor;
  var drawScene = RR.drawScene;
  var fitCanvas = RR.fitCanvas;
  var whenFontReady = RR.whenFontReady;
  var TOAST_MAX = 68;      // a toast's height at most (three lines; .toast's max-height in app.css)

  /* The track on `canvas`, drawn clear of the page's HUD, toast and setup panel (in `el`).
   * `page` says what to draw: `game()` (the last view, or null), `myId()` and `spectator`.
   * Draws at once and again on every resize; `follow(game)` takes a new view and
   * `requestDraw()` draws it. */
  RR.raceTrack = function (canvas, el, page) {
    var shown = {};          // robot id -> displayed progress (0..1), eased toward the score
    var rafId = 0;
    var lastT = 0;

    // a new view of the game
    function follow(game) {
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
    }

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
      var game = page.game();
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
      var game = page.game();
      var myId = page.myId();
      var fit = fitCanvas(canvas);
      var robots = game ? game.robots || [] : [];
      var finished = game && game.state === "finished";
      var lanes = robots.map(function (r, i) {
        return {
          name: r.name,
          progress: r.id in shown ? shown[r.id] : 0,
          color: colorFor(i),
          you: r.id === myId,
          away: r.connected === false,
          winner: finished && game.winner === r.id
        };
      });
      var hudH = el.hud ? el.hud.offsetHeight : 60;
      // the toasts' band at the bottom: no robot or name is drawn under a toast
      var band = 0;
      if (el.message) {
        var gap = parseFloat(global.getComputedStyle(el.message).bottom) || 12;
        band = gap + TOAST_MAX + 6;
      }
      var scene = drawScene(fit.ctx, fit.w, fit.h, lanes, { top: hudH, bottomInset: band,
        big: page.spectator });
      placeSetupPanel(scene);
      // a test/debug hook (read only): where things were drawn, in CSS pixels
      scene.hudBottom = hudH;
      scene.band = band;
      RR.scene = scene;
    }

    // The setup panel goes between the finish line and the robots waiting at the start (their
    // YOU / AWAY tags included, turned ones too), so that it covers none of them when it fits
    // there; otherwise it starts just under the finish line.
    function placeSetupPanel(scene) {
      var panel = el.setupPanel;
      if (!panel || panel.hidden) return;
      var top = scene.finishY + 8;
      var bottom = Infinity;
      for (var i = 0; i < scene.robots.length; i++) bottom = Math.min(bottom, scene.robots[i].y);
      if (!isFinite(bottom)) bottom = scene.yBottom;
      bottom -= (scene.tagRoom || scene.labelPx || 12) + 12;
      var h = panel.offsetHeight;
      var centre = h <= bottom - top ? (top + bottom) / 2 : top + h / 2;
      var px = Math.round(centre) + "px";
      if (panel.style.top !== px) panel.style.top = px;
    }

    if (global.ResizeObserver) {
      new ResizeObserver(requestDraw).observe(canvas);
    }
    global.addEventListener("resize", requestDraw);
    whenFontReady(requestDraw);
    requestDraw();

    return { follow: follow, requestDraw: requestDraw };
  };
})(window);
