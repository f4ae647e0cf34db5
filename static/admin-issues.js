/* The issue page's live parts, loaded as a file (the CSP allows no inline script).
 *
 * - Progress: while an issue is sending or paused, poll its progress.json
 *   every POLL_MS and update the <progress> bar, the counts, the rate and
 *   the estimate of the time left; stop when the status is final. When the
 *   status changes (sent, paused elsewhere, cancelled…) reload once, so the
 *   buttons and the final report come from the server.
 * - Confirmations: a submit button named by a checkbox's data-enables stays
 *   disabled until the box is ticked (the server checks the box too).
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var FINAL = { sent: true, cancelled: true };

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (el) {
      el.textContent = text;
    });
  }

  function followProgress(section) {
    var url = section.getAttribute("data-progress-url");
    var shownStatus = section.getAttribute("data-status");

    function show(state) {
      var bar = section.querySelector("[data-progress=bar]");
      if (bar) {
        bar.value = state.percent;
        bar.textContent = state.texts.percent;
      }
      setText(section, "[data-progress=percent]", state.texts.percent);
      setText(section, "[data-progress=rate]", state.texts.rate);
      setText(section, "[data-progress=eta]", state.texts.eta);
      // The status appears in the page head too, not only in this section.
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
          if (FINAL[state.status]) {
            section.setAttribute("data-status", state.status);
            // Let the 100 % be seen, then fetch the report from the server.
            window.setTimeout(function () { window.location.reload(); }, 1000);
            return;
          }
          if (state.status !== shownStatus) {
            window.location.reload();
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

  function guardConfirmations() {
    document.querySelectorAll("input[type=checkbox][data-enables]").forEach(function (box) {
      var button = document.getElementById(box.getAttribute("data-enables"));
      if (!button) {
        return;
      }
      var sync = function () { button.disabled = !box.checked; };
      box.addEventListener("change", sync);
      sync();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-progress-url]");
    if (section) {
      followProgress(section);
    }
    guardConfirmations();
  });
})();
