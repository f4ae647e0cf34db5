// The dev outbox (templates/dev/outbox_mail.html): the frame showing a caught mail's
// HTML part is as tall as the mail, so the page scrolls and the frame never does.
// The frame is sandboxed without scripts but same-origin, so its document can be
// measured from here. Set again when the window's width changes the mail's height.
(function () {
  "use strict";

  function fit(frame) {
    var doc = frame.contentDocument;
    if (!doc || !doc.documentElement) {
      return;
    }
    // Measured at no height, the document is as tall as its content (a frame's
    // document is never shorter than the frame itself).
    frame.style.height = "0px";
    var border = frame.offsetHeight - frame.clientHeight;
    frame.style.height = doc.documentElement.scrollHeight + border + "px";
  }

  document.querySelectorAll("iframe.mail-html").forEach(function (frame) {
    frame.addEventListener("load", function () {
      fit(frame);
    });
    if (frame.contentDocument && frame.contentDocument.readyState === "complete") {
      fit(frame);
    }
    var width = window.innerWidth;
    window.addEventListener("resize", function () {
      if (window.innerWidth !== width) {
        width = window.innerWidth;
        fit(frame);
      }
    });
  });
})();
