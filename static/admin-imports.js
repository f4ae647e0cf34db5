/* An import's page while the worker imports: poll progress.json every POLL_MS,
 * update the <progress> bar and the counts, and reload once the import has
 * finished, so the report (and the skipped lines) come from the server.
 * Loaded as a file: the CSP allows no inline script.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (el) {
      el.textContent = text;
    });
  }

  function follow(section) {
    var url = section.getAttribute("data-import-progress-url");

    function show(state) {
      var bar = section.querySelector("[data-progress=bar]");
      if (bar) {
        bar.value = state.percent;
        bar.textContent = state.texts.percent;
      }
      setText(section, "[data-progress=percent]", state.texts.percent);
      setText(section, "[data-progress=rows]", state.texts.rows);
      setText(document, "[data-progress=status_label]", state.status_label);
      Object.keys(state.counts).forEach(function (name) {
        setText(section, "[data-count=" + name + "]", String(state.counts[name]));
      });
    }

    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (state) {
          show(state);
          if (state.finished) {
            window.setTimeout(function () { window.location.reload(); }, 500);
            return;
          }
          window.setTimeout(poll, POLL_MS);
        })
        .catch(function () {
          // A blip (server restart, signed out): try again a little later.
          window.setTimeout(poll, POLL_MS * 4);
        });
    }

    window.setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-import-progress-url]");
    if (section) {
      follow(section);
    }
  });
})();
