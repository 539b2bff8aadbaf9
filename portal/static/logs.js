// The live log panel keeps a bounded number of lines: after each swap, the oldest beyond data-max-lines go.
document.addEventListener("htmx:afterSettle", function () {
  var list = document.getElementById("log-lines");
  if (!list) { return; }
  var max = parseInt(list.getAttribute("data-max-lines") || "2000", 10);
  while (list.children.length > max) { list.removeChild(list.firstElementChild); }
});
