/* The issue pages' live parts, loaded as a file (the CSP allows no inline script).
 *
 * - Progress (the issue's page): while an issue is sending or paused, poll its
 *   progress.json every POLL_MS (admin-progress.js, loaded first) and update the
 *   <progress> bar, the counts, the rate and the estimate of the time left; stop
 *   when the status is final. When the status changes (sent, paused elsewhere,
 *   cancelled…) reload once, so the buttons and the final report come from the server.
 * - Confirmations: a submit button named by a checkbox's data-enables stays
 *   disabled until the box is ticked (the server checks the box too).
 * - Live preview (the editor): PREVIEW_DELAY_MS after the editor stops typing, the
 *   form is posted to its preview URL (the "Náhled" button's formaction) into a
 *   fresh sandboxed frame, which replaces the shown one once loaded. A fresh frame
 *   each time: posting again into the same frame would add an entry to the
 *   browser's history for every pause in the typing. The texts this shows come
 *   from the page's data- attributes, in the page's language.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var PREVIEW_DELAY_MS = 400;
  var FINAL = { sent: true, cancelled: true };

  function followProgress(section) {
    var progress = window.ZpravodajProgress;
    var url = section.getAttribute("data-progress-url");
    var shownStatus = section.getAttribute("data-status");

    function show(state) {
      progress.show(section, state);
      progress.setText(section, "[data-progress=rate]", state.texts.rate);
      progress.setText(section, "[data-progress=eta]", state.texts.eta);
      // The separator and the time left show only with an estimate.
      section.querySelectorAll("[data-progress-part=eta]").forEach(function (el) {
        el.hidden = !state.texts.eta;
      });
    }

    progress.poll(url, POLL_MS, function (state) {
      show(state);
      if (FINAL[state.status]) {
        section.setAttribute("data-status", state.status);
        // Let the 100 % be seen, then fetch the report from the server.
        window.setTimeout(function () { window.location.reload(); }, 1000);
        return false;
      }
      if (state.status !== shownStatus) {
        window.location.reload();
        return false;
      }
      return true;
    });
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

  function livePreview(section) {
    var form = document.getElementById("issue-form");
    var button = document.getElementById("preview-button");
    var wrap = section.querySelector(".preview-frame-wrap");
    var status = section.querySelector("[data-preview-status]");
    var updating = section.getAttribute("data-preview-updating") || "";
    if (!form || !button || !wrap || typeof form.requestSubmit !== "function") {
      return; // the button alone still previews, as without a script
    }
    var latest = 0;
    var timer = null;

    function shown(frame, number) {
      if (number !== latest) {
        frame.remove(); // a newer preview is on its way
        return;
      }
      wrap.querySelectorAll("iframe").forEach(function (other) {
        if (other !== frame) {
          other.remove();
        }
      });
      frame.hidden = false;
      frame.setAttribute("data-preview-current", "");
      if (status) {
        status.textContent = "";
      }
    }

    function render() {
      latest += 1;
      var number = latest;
      var current = wrap.querySelector("iframe[data-preview-current]");
      var frame = current.cloneNode(false);
      frame.removeAttribute("data-preview-current");
      frame.removeAttribute("src");
      frame.name = "issue-live-preview-" + number;
      frame.hidden = true;
      // The first load is the new frame's empty document; the second, the preview.
      frame.addEventListener("load", function empty() {
        frame.removeEventListener("load", empty);
        frame.addEventListener("load", function () { shown(frame, number); });
        button.formTarget = frame.name;
        form.requestSubmit(button);
      });
      if (status) {
        status.textContent = updating;
      }
      wrap.appendChild(frame);
    }

    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(render, PREVIEW_DELAY_MS);
    }

    form.addEventListener("input", later);
    button.addEventListener("click", function (event) {
      event.preventDefault();
      window.clearTimeout(timer);
      render();
    });
    render(); // what the form holds now (a draft, or what a refused save kept)
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-progress-url]");
    if (section) {
      followProgress(section);
    }
    guardConfirmations();
    var preview = document.querySelector("[data-live-preview]");
    if (preview) {
      livePreview(preview);
    }
  });
})();
