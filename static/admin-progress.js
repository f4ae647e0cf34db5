/* What the admin's long-running pages share: follow a progress.json until the work
 * is done (an issue sending: admin-issues.js; an import: admin-imports.js).
 * Loaded as a file before the page's own script (the CSP allows no inline script).
 *
 * ZpravodajProgress.poll(url, everyMs, onState): fetch `url` every `everyMs` and hand
 *   each state to onState, which returns true to go on polling. A failed fetch
 *   (a server restart, a signed-out session) is tried again four times later.
 * ZpravodajProgress.show(section, state): the parts both pages have, by their data-
 *   attributes: the <progress> bar, the percentage, the status label (in the page
 *   head too) and every count.
 * ZpravodajProgress.setText(root, selector, text): the text of every match.
 */
window.ZpravodajProgress = (function () {
  "use strict";

  function setText(root, selector, text) {
    root.querySelectorAll(selector).forEach(function (el) {
      el.textContent = text;
    });
  }

  function show(section, state) {
    var bar = section.querySelector("[data-progress=bar]");
    if (bar) {
      bar.value = state.percent;
      bar.textContent = state.texts.percent;
    }
    setText(section, "[data-progress=percent]", state.texts.percent);
    setText(document, "[data-progress=status_label]", state.status_label);
    Object.keys(state.counts).forEach(function (name) {
      setText(section, "[data-count=" + name + "]", String(state.counts[name]));
    });
  }

  function poll(url, everyMs, onState) {
    function once() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (state) {
          if (onState(state)) {
            window.setTimeout(once, everyMs);
          }
        })
        .catch(function () {
          window.setTimeout(once, everyMs * 4);
        });
    }
    window.setTimeout(once, everyMs);
  }

  return { poll: poll, setText: setText, show: show };
})();
