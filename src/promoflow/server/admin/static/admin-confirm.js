/* promoflow admin: a form with data-confirm="question" asks before it is sent (revoke, rotate, replace, disable,
   deactivate, delete). Vendored with the package; no inline script (the CSP forbids it). Without script the form
   is sent as before: the server checks every action the same either way. */
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) { return; }
  if (!window.confirm(form.getAttribute("data-confirm"))) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
