// The run page follows a run without a reload: every second it fetches the page's live
// part (rendered and escaped by the server) and swaps it in, keeping which mapped stages
// the user unfolded; it stops once the run has ended. No framework, no build step.
(function () {
  "use strict";
  var box = document.getElementById("run-live");
  if (!box) { return; }
  var FINISHED = ["Success", "Failed", "Cancelled"];
  var PERIOD_MS = 1000;

  function folds() {
    var out = {};
    box.querySelectorAll("details[data-fold]").forEach(function (d) { out[d.dataset.fold] = d.open; });
    return out;
  }

  function tick() {
    if (FINISHED.indexOf(box.dataset.state) >= 0) { return; }
    fetch(box.dataset.live, {credentials: "same-origin", cache: "no-store"})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        var state = response.headers.get("X-Run-State");
        return response.text().then(function (html) {
          var kept = folds();
          box.innerHTML = html;
          box.querySelectorAll("details[data-fold]").forEach(function (d) {
            if (d.dataset.fold in kept) { d.open = kept[d.dataset.fold]; }
          });
          box.dataset.state = state || box.dataset.state;
        });
      })
      .catch(function () { /* a missed beat: try again next period */ })
      .then(function () { setTimeout(tick, PERIOD_MS); });
  }

  setTimeout(tick, PERIOD_MS);
})();
