(function () {
  var input = document.getElementById("filter");
  var rows = document.querySelectorAll("#topics tbody tr");
  input.addEventListener("input", function () {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    rows.forEach(function (row) {
      var text = row.getAttribute("data-filter");
      row.hidden = !words.every(function (word) { return text.indexOf(word) !== -1; });
    });
  });
})();
