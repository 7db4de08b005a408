/* Robot Race lobby: neon robots racing up the #demo canvas behind the form.
 * Uses RobotRace.drawScene from draw.js (loaded first). Pauses while the tab is hidden. */
"use strict";

(function (global) {
  var RR = global.RobotRace;
  var canvas = document.getElementById("demo");
  if (!canvas || !RR) return;

  var NAMES = ["ZAP", "BOLT", "NEON", "BYTE", "CHIP", "BLIP"];
  var reduceMotion = global.matchMedia && global.matchMedia("(prefers-reduced-motion: reduce)").matches;

  var bots = [];
  var holdUntil = 0;     // after a win, keep the finish on screen a moment
  var rafId = 0;
  var lastT = 0;

  function rand(a, b) { return a + Math.random() * (b - a); }

  function newRace() {
    var count = global.innerWidth < 420 ? 4 : global.innerWidth < 800 ? 5 : 6;
    bots = [];
    for (var i = 0; i < count; i++) {
      bots.push({
        name: NAMES[i],
        score: 0,
        shown: 0,
        rate: rand(3.5, 8),          // presses a second
        next: rand(0.1, 0.6),        // seconds to the next press
        winner: false
      });
    }
    holdUntil = 0;
  }

  var WIN = 25;

  function step(dt, now) {
    if (holdUntil) {
      if (now >= holdUntil) newRace();
      return;
    }
    var won = null;
    for (var i = 0; i < bots.length; i++) {
      var b = bots[i];
      b.next -= dt;
      while (b.next <= 0 && b.score < WIN) {
        b.score++;
        // bursty, human-like pressing
        b.next += (1 / b.rate) * rand(0.4, 1.8);
        if (Math.random() < 0.05) b.rate = rand(3.5, 8);
      }
      var goal = b.score / WIN;
      b.shown += (goal - b.shown) * (1 - Math.exp(-dt * 12));
      if (Math.abs(goal - b.shown) < 0.002) b.shown = goal;
      if (b.score >= WIN && !won) won = b;
    }
    if (won) {
      won.winner = true;
      won.shown = 1;
      holdUntil = now + 1800;
    }
  }

  function draw() {
    // at one canvas pixel per CSS pixel: a backdrop behind the form needs no more, and a phone's
    // 2x or 3x screen would draw it 4 to 9 times over on every frame
    var fit = RR.fitCanvas(canvas, 1);
    var lanes = bots.map(function (b, i) {
      return { name: b.name, progress: b.shown, color: RR.colorFor(i), winner: b.winner };
    });
    RR.drawScene(fit.ctx, fit.w, fit.h, lanes, { finishY: Math.max(48, Math.round(fit.h * 0.08)) });
  }

  // A backdrop: drawn 30 times a second (every other frame at 60 Hz), which keeps the phone's
  // main thread free for the form.
  var FRAME_MS = 1000 / 30;

  function frame(t) {
    rafId = 0;
    if (!lastT || t - lastT >= FRAME_MS - 2) {
      var dt = lastT ? Math.min(0.1, (t - lastT) / 1000) : 1 / 30;
      lastT = t;
      step(dt, t);
      draw();
    }
    if (!reduceMotion && document.visibilityState !== "hidden") rafId = requestAnimationFrame(frame);
  }

  function start() {
    if (!rafId) {
      lastT = 0;
      rafId = requestAnimationFrame(frame);
    }
  }

  function stop() {
    if (rafId) cancelAnimationFrame(rafId);
    rafId = 0;
  }

  newRace();
  if (reduceMotion) {
    // one still frame of a race in progress
    for (var i = 0; i < bots.length; i++) bots[i].shown = rand(0.15, 0.75);
    draw();
    global.addEventListener("resize", draw);
    RR.whenFontReady(draw);
    return;
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") stop();
    else start();
  });
  global.addEventListener("resize", function () { if (!rafId) draw(); });
  start();
})(window);
