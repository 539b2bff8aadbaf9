// Live log panels (an application's logs, a build's console) keep a bounded number of lines: after each swap,
// the oldest beyond the list's data-max-lines go, and the "no lines yet" placeholder goes once lines came.
document.addEventListener("htmx:afterSettle", function () {
  document.querySelectorAll("ol[data-max-lines]").forEach(function (list) {
    var max = parseInt(list.getAttribute("data-max-lines") || "2000", 10);
    var empty = list.querySelector("li.empty");
    if (empty && list.children.length > 1) { list.removeChild(empty); }
    while (list.children.length > max) { list.removeChild(list.firstElementChild); }
  });
});
