// Live countdowns: every element with data-expires (an RFC 3339 time) shows
// the time left, once a second; the page works without it.
(function () {
  "use strict";
  function fmt(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }
  function tick() {
    var els = document.querySelectorAll("[data-expires]");
    var now = Date.now();
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var left = Date.parse(el.getAttribute("data-expires")) - now;
      if (isNaN(left)) continue;
      if (left <= 0) {
        el.textContent = "expired";
        el.classList.add("soon");
        continue;
      }
      el.textContent = fmt(left) + " left";
      el.classList.toggle("soon", left < 120000);
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
