/* Zpravodaj's sign-up form on the programme's website, without leaving the page.
 *
 * Include it after a plain HTML form that posts to <service>/subscribe and carries
 * data-zpravodaj (README, "Embedding the form in the website"). Without this script
 * the form still works: the visitor lands on the service's own answer page.
 * Every outcome shows a message in the form's .zpravodaj-zprava element: accepted,
 * refused with the reason, rate-limited, and also a refusal by CORS (the website's
 * origin missing from EMBED_ORIGINS) or a network failure, which a bare fetch()
 * would leave silent. The language is the form's lang attribute (or the page's).
 */
(function () {
  "use strict";
  var TEXTS = {
    cs: {
      accepted: "Zkontrolujte svou e-mailovou schránku a potvrďte odběr.",
      again: "Přihlášení se nepodařilo. Zkuste to prosím znovu.",
      unreachable: "Přihlášení se nepodařilo odeslat (služba je nedostupná, nebo tento web nemá povolení). Zkuste to prosím později, nebo se přihlaste na stránce ",
    },
    en: {
      accepted: "Check your mailbox and confirm your subscription.",
      again: "The sign-up did not work. Please try again.",
      unreachable: "The sign-up could not be sent (the service is unreachable, or this website is not allowed to use it). Please try again later, or sign up on the page ",
    },
  };

  function language(form) {
    var lang = (form.getAttribute("lang") || document.documentElement.lang || "cs").slice(0, 2);
    return TEXTS[lang] ? lang : "cs";
  }

  function show(out, text, link) {
    out.textContent = text;
    if (link) {
      var a = document.createElement("a");
      a.href = link;
      a.textContent = link;
      out.appendChild(a);
      out.appendChild(document.createTextNode("."));
    }
  }

  function attach(form) {
    var out = form.querySelector(".zpravodaj-zprava");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var lang = language(form);
      var texts = TEXTS[lang];
      var action = new URL(form.action);
      action.searchParams.set("lang", lang);
      var lists = Array.prototype.map.call(form.querySelectorAll("[name=list]"), function (input) {
        return input.type === "checkbox" && !input.checked ? null : input.value;
      }).filter(Boolean);
      var body = {
        email: form.elements.email.value,
        list: lists,
        website: form.elements.website ? form.elements.website.value : "",
      };
      if (form.elements.name) body.name = form.elements.name.value;
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      fetch(action.toString(), {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept-Language": lang },
        body: JSON.stringify(body),
      })
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (data) {
            if (response.status === 202) return show(out, texts.accepted);
            var errors = data.errors || {};
            show(out, errors.email || errors.list || errors.name || errors.request || texts.again);
          });
        })
        .catch(function () {
          // CORS refused (origin not in EMBED_ORIGINS) or the network failed: say so.
          action.search = "?lang=" + lang;
          show(out, texts.unreachable, action.toString());
        })
        .then(function () {
          if (button) button.disabled = false;
        });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-zpravodaj]"), attach);
})();
