/* Robot Race name fields: 1–10 characters as a person counts them (grapheme clusters: an
 * emoji with its skin tone is one), the same rule the server applies. Without Intl.Segmenter
 * it counts code points, and the server has the last word either way. */
"use strict";

(function (global) {
  var MAX = 10;
  var segmenter = global.Intl && global.Intl.Segmenter
    ? new global.Intl.Segmenter(undefined, { granularity: "grapheme" })
    : null;

  function count(text) {
    if (segmenter) return Array.from(segmenter.segment(text)).length;
    return Array.from(text).length;
  }

  var field = document.getElementById("name");
  if (!field) return;

  function check() {
    var n = count(field.value.trim());
    field.setCustomValidity(n > MAX ? "Name must be 1 to " + MAX + " characters" : "");
  }

  field.addEventListener("input", check);
  check();
})(window);
