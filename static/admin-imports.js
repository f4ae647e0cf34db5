/* An import's page while the worker imports: poll progress.json every POLL_MS,
 * update the <progress> bar and the counts, and reload once the import has
 * finished, so the report (and the skipped lines) come from the server.
 * The polling itself is admin-progress.js's (loaded first).
 * Loaded as a file: the CSP allows no inline script.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var progress = window.ZpravodajProgress;

  function follow(section) {
    var url = section.getAttribute("data-import-progress-url");

    function show(state) {
      progress.show(section, state);
      progress.setText(section, "[data-progress=rows]", state.texts.rows);
    }

    progress.poll(url, POLL_MS, function (state) {
      show(state);
      if (state.finished) {
        window.setTimeout(function () { window.location.reload(); }, 500);
        return false;
      }
      return true;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-import-progress-url]");
    if (section) {
      follow(section);
    }
  });
})();
