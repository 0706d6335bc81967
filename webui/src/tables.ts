// Tables read as cards on a phone (styles.css): each cell then shows its column's name, which it
// takes from the table's header here, so that every table of every page does so without each
// page repeating its headers.

/** Gives every body cell under `root` a `data-label` with the name of its column. */
export function labelTableCells(root: ParentNode) {
  for (const table of root.querySelectorAll("table")) {
    const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent?.trim() ?? "");
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, column) => {
        const label = headers[column] ?? "";
        if (cell.getAttribute("data-label") !== label) cell.setAttribute("data-label", label);
      });
    }
  }
}
