// The softening book: figures readable at page width.
// * every figure of a cell output opens at full size in a new tab (click-to-enlarge);
// * a cell that shows an interactive figure (div.softening-interactive, made by ctx.figure(...,
//   interactive=...)) keeps its static PNG for print; on screen the PNG is one link away.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".cell_output img, .output img").forEach(function (img) {
    if (img.closest("a") || img.closest(".softening-interactive")) return;
    var link = document.createElement("a");
    link.href = img.src;
    link.target = "_blank";
    link.rel = "noopener";
    link.className = "softening-enlarge";
    link.title = "Open the full-size figure";
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  });
  document.querySelectorAll(".softening-interactive").forEach(function (box) {
    // the static PNG of this figure: the nearest image output before it in the same cell
    var out = box.closest(".cell_output") || box.parentNode;
    var el = box;
    while (el.parentNode && el.parentNode !== out) el = el.parentNode;
    var img = null, prev = el.previousElementSibling;
    while (prev && !img) {
      img = prev.tagName === "IMG" ? prev : prev.querySelector("img");
      if (!img) prev = prev.previousElementSibling;
    }
    if (!img) return;
    prev.classList.add("softening-static-png");
    var note = document.createElement("p");
    note.className = "softening-static-link";
    note.appendChild(document.createTextNode(
      "Interactive: hover for values, click a legend entry to hide a model, drag to zoom. "));
    var a = document.createElement("a");
    a.href = img.src;
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = "Static figure (PNG, as printed)";
    note.appendChild(a);
    box.appendChild(note);
  });
});
