// The console's own script: the pages work without it (forms post, pages reload); with
// it, the replay page plays its recorded terminals in place. Loaded with `defer` from
// /assets/console.js under `script-src 'self'`, so there is no inline script anywhere.
// htmx is configured by the `htmx-config` meta tag in base.html and by attributes.
(function () {
  "use strict";

  // Every element with data-cast="URL" becomes an asciinema player of that asciicast.
  function startPlayers() {
    if (typeof AsciinemaPlayer === "undefined") {
      return;
    }
    document.querySelectorAll("[data-cast]").forEach(function (el) {
      if (el.dataset.started) {
        return;
      }
      el.dataset.started = "yes";
      el.textContent = "";
      AsciinemaPlayer.create(el.dataset.cast, el, { fit: "width", idleTimeLimit: 2 });
    });
  }

  // Deferred scripts run in document order before DOMContentLoaded, and the player's
  // script comes after this one on the session page: start once all have run.
  if (document.readyState === "complete") {
    startPlayers();
  } else {
    document.addEventListener("DOMContentLoaded", startPlayers);
  }
})();
