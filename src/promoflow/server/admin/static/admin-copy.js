/* promoflow admin: the copy button next to a secret shown once. Vendored with the package (no CDN); no inline
   script (the CSP forbids it). A button with data-copy="ID" copies the value of the field with that id. */
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) { return; }
  var field = document.getElementById(button.getAttribute("data-copy"));
  var status = document.getElementById(button.getAttribute("data-copy") + "-status");
  if (!field) { return; }
  function say(text) { if (status) { status.textContent = text; } }
  function fallback() {
    field.focus();
    field.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    say(ok ? "Copied." : "Selected: press Ctrl+C (or ⌘C) to copy.");
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(function () { say("Copied."); }, fallback);
  } else {
    fallback();
  }
});
