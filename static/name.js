/* Robot Race name fields: the rules the server applies, checked as the player types. 1–10
 * characters as a person counts them (grapheme clusters: an emoji with its skin tone is one),
 * at most 40 bytes of UTF-8, and no character carrying more than 2 combining marks. Without
 * Intl.Segmenter it counts code points, and the server has the last word either way. */
"use strict";

(function (global) {
  var MAX = 10;
  var MAX_BYTES = 40;
  var MAX_MARKS = 2;
  var segmenter = global.Intl && global.Intl.Segmenter
    ? new global.Intl.Segmenter(undefined, { granularity: "grapheme" })
    : null;
  var encoder = global.TextEncoder ? new global.TextEncoder() : null;
  var mark = /\p{M}/gu;

  function graphemes(text) {
    if (segmenter) return Array.from(segmenter.segment(text), function (s) { return s.segment; });
    return Array.from(text);
  }

  /* The rule a name breaks, as a message; "" when it is fine. */
  function problem(text) {
    var parts = graphemes(text);
    var stacked = parts.some(function (g) { return (g.match(mark) || []).length > MAX_MARKS; });
    if (stacked) return "Name must not stack more than " + MAX_MARKS + " accents or marks on one character";
    if (parts.length > MAX) return "Name must be 1 to " + MAX + " characters";
    if (encoder && encoder.encode(text).length > MAX_BYTES) {
      return "Name must be at most " + MAX_BYTES + " bytes (emoji take several)";
    }
    return "";
  }

  var field = document.getElementById("name");
  if (!field) return;

  function check() {
    field.setCustomValidity(problem(field.value.trim()));
  }

  field.addEventListener("input", check);
  check();
})(window);
