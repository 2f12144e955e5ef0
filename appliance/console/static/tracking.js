// Lists with selectable rows (tracking, trash) and confirmation panels (those and jobs): select-all, and cancel of the panel.
(function () {
  "use strict";
  Console.onLoad(function (root) {
    var all = root.querySelector ? root.querySelector("#select-all") : null;
    if (all && !all.dataset.wired) {
      all.dataset.wired = "1";
      all.addEventListener("change", function () {
        document.querySelectorAll("input.sel").forEach(function (box) { box.checked = all.checked; });
      });
    }
  });
  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-clear]") : null;
    if (el) {
      var target = document.querySelector(el.getAttribute("data-clear"));
      if (target) { target.textContent = ""; }
    }
  });
})();
