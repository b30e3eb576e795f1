// sms-flow dashboard: ask /dashboard.json every few seconds and replace the parts that changed.
// No framework, nothing from another site. Without JavaScript the page is a snapshot.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main) { return; }
  var every = Math.max(1, parseFloat(main.getAttribute("data-refresh")) || 2) * 1000;
  var url = "/dashboard.json?stuck=" + encodeURIComponent(main.getAttribute("data-stuck"));
  var updated = document.querySelector("[data-updated]");
  function apply(data) {
    Object.keys(data.html).forEach(function (name) {
      var part = document.querySelector('[data-part="' + name + '"]');
      // Replace only what changed, so that focus and open details stay where they are.
      if (part && part.innerHTML !== data.html[name] && !part.contains(document.activeElement)) {
        part.innerHTML = data.html[name];
      }
    });
    if (updated) { updated.textContent = "updated " + data.updated; }
  }
  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401 || resp.status === 403) { window.location.href = "/login?next=/"; return null; }
        return resp.ok ? resp.json() : null;
      })
      .then(function (data) { if (data) { apply(data); } })
      .catch(function () { if (updated) { updated.textContent = "not updated: the service does not answer"; } })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
