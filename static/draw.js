/* Robot Race: the shared robot and track drawing (canvas), used by the lobby's backdrop
 * (lobby.js) and the race page (track.js, race.js). Vanilla JS, no build step; load it first.
 * Provides window.RobotRace.{COLORS, FONT, MAX_PLAYERS, colorFor, drawRobot, drawScene,
 * fitCanvas, whenFontReady}. */
"use strict";

(function (global) {
  var COLORS = ["#00ffff", "#ff00ff", "#ffff00", "#ffffff"];
  var FONT = '"Press Start 2P", ui-monospace, "Courier New", monospace';
  var MAX_PLAYERS = 10;
  var BG = "#07070d";
  var MIN_PX = 12;   // no text on the track is drawn smaller (legible on a phone)

  function colorFor(index) {
    return COLORS[((index % COLORS.length) + COLORS.length) % COLORS.length];
  }

  /* One robot: a glowing square with an antenna, two eyes and a mouth, centred on (x, y).
   * opts: {you: bool (white outline), winner: bool (stronger glow), glow: number,
   *        away: bool (its player is away: no glow, drawn once, for a faded look)} */
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
    // body (drawn twice for a brighter neon glow; once for an away robot, which stays dim)
    ctx.fillRect(left, top, s, s);
    if (!opts.away) ctx.fillRect(left, top, s, s);
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

  /* A label centred on x; returns its box {x, y, w, h, text} (what was drawn). It shrinks to
   * fit maxWidth down to minPx (MIN_PX when not given), then is cut. */
  function drawLabel(ctx, text, x, y, maxWidth, px, color, baseline, minPx) {
    var fit = fitText(ctx, text, maxWidth, px, Math.min(px, minPx || MIN_PX));
    ctx.save();
    ctx.font = fit.size + "px " + FONT;
    ctx.textAlign = "center";
    ctx.textBaseline = baseline || "top";
    ctx.fillStyle = color;
    ctx.shadowColor = color;
    ctx.shadowBlur = 6;
    ctx.fillText(fit.text, Math.round(x), Math.round(y));
    var tw = ctx.measureText(fit.text).width;
    ctx.restore();
    var top = baseline === "bottom" ? y - fit.size : y;
    return { x: x - tw / 2, y: top, w: tw, h: fit.size, text: fit.text };
  }

  /* A label turned a quarter clockwise, centred on x, read downwards from y (shrunk and cut to
   * maxLength as drawLabel is). */
  function drawTurnedLabel(ctx, text, x, y, maxLength, px, color, minPx) {
    var fit = fitText(ctx, text, maxLength, px, Math.min(px, minPx || MIN_PX));
    ctx.save();
    ctx.font = fit.size + "px " + FONT;
    var len = ctx.measureText(fit.text).width;
    ctx.translate(Math.round(x), Math.round(y));
    ctx.rotate(Math.PI / 2);
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillStyle = color;
    ctx.shadowColor = color;
    ctx.shadowBlur = 6;
    ctx.fillText(fit.text, 0, 0);
    ctx.restore();
    return { x: x - fit.size / 2, y: y, w: fit.size, h: len, text: fit.text };
  }

  /* How far above its centre a robot reaches (antenna and the "you" outline included). */
  function robotReach(size) {
    var s = Math.max(6, Math.round(size));
    return s / 2 + Math.max(1, Math.round(s / 10)) * 4 + Math.max(4, Math.round(s * 0.18));
  }

  /* The whole track. lanes: [{name, progress 0..1, color, you, winner}] in join order.
   * opts (all sizes in CSS pixels):
   *   top: the bottom of what covers the top of the canvas (the race page's HUD). The finish line
   *        is placed so that a robot at the finish, antenna and outline included, stays below it;
   *        the geometry depends only on the canvas size, `top` and the names, never on the state.
   *   finishY: where the finish line goes (when there is no `top`; the lobby's backdrop).
   *   bottomInset: a band at the bottom kept free of robots and names (the race page's toasts).
   *   big: a screen watched from across a room (the /watch view on a TV): robots and names
   *        grow with the screen instead of stopping at a phone's or laptop's size.
   * Names go under their robots, across the lane when every name fits at a readable size
   * (12px at least); otherwise each is written down its own lane (turned a quarter), in full, so
   * that ten long names on a phone are all readable and each sits under its own robot. A tag
   * (YOU, AWAY, WIN!) too wide for its lane at that size is turned the same way.
   * Returns the geometry: {finishY, yBottom, size, rotated, labelPx, tagRoom (how far above a
   * robot its tag may reach), labels and robots: [{x, y, w, h}]} (a label's box also has the
   * text drawn). */
  function drawScene(ctx, w, h, lanes, opts) {
    opts = opts || {};
    var n = Math.max(1, lanes.length);
    var laneW = w / n;
    var inset = Math.max(0, Number(opts.bottomInset) || 0);
    var top = opts.top != null ? Math.max(0, Number(opts.top) || 0) : null;

    // label size: 12px (a big screen: up to 24px, shrinking down to 12px to fit), never less:
    // names too long to go across their lanes at that size are turned
    var big = !!opts.big && w >= 560;
    var px = big ? Math.round(Math.max(MIN_PX, Math.min(24, h / 45))) : MIN_PX;
    var minPx = MIN_PX;
    ctx.font = px + "px " + FONT;
    var widest = 0;
    for (var k = 0; k < lanes.length; k++) {
      widest = Math.max(widest, ctx.measureText(String(lanes[k].name || "")).width);
    }
    // (half a pixel of slack: ten 12px characters are 120.0004px wide, and fit a 120px room)
    var across = Math.max(laneW * 0.92, laneW - 8) + 0.5;
    var rotated = false;
    if (widest > across) {
      var smaller = Math.floor(px * across / widest);
      if (smaller >= minPx) px = smaller;
      else rotated = n > 1;
    }
    // turned names: as long as the longest (ten wide characters fit), never longer
    var labelMax = rotated ? Math.min(widest, px * 11) : across;
    var labelExtent = rotated ? labelMax : px;
    // tags go across when they fit (a little over a narrow lane's edges: YOU always does),
    // else turned
    var tagMax = Math.max(laneW * 0.95, rotated ? 0 : 40, 3 * px) + 0.5;
    function tagWidth(text) {
      ctx.font = px + "px " + FONT;
      return ctx.measureText(text).width;
    }
    // the room a YOU or AWAY tag takes above a robot at the start
    var tagRoom = Math.max(px, tagWidth("YOU") > tagMax ? tagWidth("YOU") : px,
      tagWidth("AWAY") > tagMax ? tagWidth("AWAY") : px);

    var cap = big ? 96 : 44;   // the largest robot, CSS pixels
    var size = top != null
      ? Math.max(12, Math.min(cap, laneW * 0.5, (h - top) * 0.09))
      : Math.max(12, Math.min(cap, laneW * 0.5, (h - (opts.finishY || h * 0.1)) * 0.1));
    var youPad = Math.max(4, Math.round(size * 0.18));
    // room for the largest robot this screen shows, however many lanes: the line stays put
    var finishY = Math.round(top != null ? top + robotReach(Math.min(cap, (h - top) * 0.09)) + 4
      : opts.finishY != null ? opts.finishY : Math.max(40, h * 0.1));
    var bottomPad = 12 + 8 + youPad + labelExtent + inset;

    var yBottom = h - bottomPad - size / 2;
    var yTop = finishY;
    var travel = Math.max(0, yBottom - yTop);

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

    var labels = [];
    var robots = [];
    for (var j = 0; j < lanes.length; j++) {
      var lane = lanes[j];
      var color = lane.color || colorFor(j);
      var p = Math.max(0, Math.min(1, Number(lane.progress) || 0));
      var x = laneW * (j + 0.5);
      var y = yBottom - p * travel;
      // a robot whose player is away is drawn faded, with "AWAY" over it
      var dim = lane.away ? 0.35 : 1;
      ctx.globalAlpha = dim;

      // trail from the start to the robot
      if (y < yBottom - 1) {
        var grad = ctx.createLinearGradient(0, yBottom, 0, y);
        grad.addColorStop(0, "rgba(0,0,0,0)");
        grad.addColorStop(1, color);
        ctx.globalAlpha = 0.45 * dim;
        ctx.fillStyle = grad;
        var tw = Math.max(2, Math.round(size * 0.18));
        ctx.fillRect(Math.round(x - tw / 2), y, tw, yBottom - y);
        ctx.globalAlpha = dim;
      }

      drawRobot(ctx, x, y, size, color, lane.away
        ? { you: lane.you, winner: lane.winner, away: true, glow: 0 }
        : { you: lane.you, winner: lane.winner });
      var reach = lane.you ? robotReach(size) : robotReach(size) - youPad;
      robots.push({ x: x - size / 2, y: y - reach, w: size, h: reach + size / 2 });

      // name under the robot: across its lane, or turned down the lane
      var pad = lane.you ? youPad : 0;
      var ny = y + size / 2 + 8 + pad;
      var box = rotated
        ? drawTurnedLabel(ctx, String(lane.name || ""), x, ny, labelMax, px, color)
        : drawLabel(ctx, String(lane.name || ""), x, ny, labelMax, px, color, "top");
      labels.push(box);

      // "YOU" / "WIN!" above it, or under the name when the robot is up at the finish line
      var above = lane.winner
        ? (lane.you && !rotated && tagWidth("YOU WIN!") <= tagMax ? "YOU WIN!" : "WIN!")
        : (lane.away ? "AWAY" : (lane.you ? "YOU" : ""));
      if (above) {
        var antenna = Math.max(1, Math.round(size / 10)) * 4;
        var ay = y - size / 2 - antenna - pad - 5;
        var tagColor = lane.winner ? "#ffff00" : "#ffffff";
        if (lane.away) ctx.globalAlpha = 0.75; // the AWAY tag stays readable
        var tagW = tagWidth(above);
        if (tagW <= tagMax) {
          if (ay - px < finishY + 4) {
            drawLabel(ctx, above, x, box.y + box.h + 6, tagMax, px, tagColor, "top");
          } else {
            drawLabel(ctx, above, x, ay, tagMax, px, tagColor, "bottom");
          }
        } else {
          // turned, down its own lane: over the robot, or under its name near the finish line
          var ty = ay - tagW;
          if (ty < finishY + 4) ty = box.y + box.h + 6;
          drawTurnedLabel(ctx, above, x, ty, tagW + 1, px, tagColor);
        }
      }
      ctx.globalAlpha = 1;
    }
    ctx.restore();
    return { finishY: finishY, yBottom: yBottom, size: size, rotated: rotated, labels: labels,
      robots: robots, labelPx: px, tagRoom: tagRoom };
  }

  /* Size a canvas to its CSS box at devicePixelRatio (at most maxDpr when given); returns the
   * CSS size. */
  function fitCanvas(canvas, maxDpr) {
    var dpr = global.devicePixelRatio || 1;
    if (maxDpr > 0) dpr = Math.min(dpr, maxDpr);
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

  var RR = global.RobotRace || (global.RobotRace = {});
  RR.COLORS = COLORS;
  RR.FONT = FONT;
  RR.MAX_PLAYERS = MAX_PLAYERS;
  RR.colorFor = colorFor;
  RR.drawRobot = drawRobot;
  RR.drawScene = drawScene;
  RR.fitCanvas = fitCanvas;
  RR.whenFontReady = whenFontReady;
})(window);
