/* coretrack: progressive enhancement only. Every page works without this file. */
(function () {
  "use strict";

  /* Tables marked data-sortable: each column heading becomes a button that sorts the rows shown
     (numbers by value, times by their datetime, text alphabetically); aria-sort says the order. */
  function sortKey(cell, numeric) {
    var time = cell.querySelector("time[datetime]");
    if (time) return time.getAttribute("datetime");
    var text = cell.textContent.trim();
    if (numeric) return text === "" || text === "—" ? -Infinity : parseFloat(text.replace(/[^\d.-]/g, ""));
    return text.toLowerCase();
  }

  function makeSortable(table) {
    var headings = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headings, function (heading, column) {
      if (heading.classList.contains("pick")) return;  // the row boxes' column: nothing to sort by
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (heading.firstChild) button.appendChild(heading.firstChild);
      heading.appendChild(button);
      button.addEventListener("click", function () {
        var ascending = heading.getAttribute("aria-sort") !== "ascending";
        var numeric = heading.classList.contains("num");
        Array.prototype.forEach.call(headings, function (other) { other.removeAttribute("aria-sort"); });
        heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[column], numeric), y = sortKey(b.cells[column], numeric);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  /* On a phone each row becomes a small card: every cell is labelled with its column's heading
     (the stylesheet does the rest, only on narrow screens; without JavaScript the table scrolls). */
  function labelCells(table) {
    if (!table.tHead || !table.tBodies.length) return;
    var headings = Array.prototype.map.call(table.tHead.rows[0].cells, function (cell) {
      return cell.textContent.trim();
    });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      Array.prototype.forEach.call(row.cells, function (cell, column) {
        if (headings[column]) cell.setAttribute("data-label", headings[column]);
      });
    });
    table.setAttribute("data-stacked", "");
  }

  /* Forms marked data-confirm ask first; the server-side flow stays the same without JavaScript. */
  function confirmFirst(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  /* Forms marked data-progress show that the request is under way and refuse a second submit
     (the buttons are not disabled: a disabled submitter would drop its name=value from the post). */
  function showProgress(form) {
    var status = form.querySelector("[data-progress-status]");
    form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (form.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
      if (submitter && submitter.value !== form.getAttribute("data-progress")) return;
      form.setAttribute("aria-busy", "true");
      if (status) status.hidden = false;
      if (submitter) submitter.classList.add("busy");
    });
    // Coming back with the Back button shows the form as it was, not stuck "busy".
    window.addEventListener("pageshow", function () {
      form.removeAttribute("aria-busy");
      if (status) status.hidden = true;
    });
  }

  /* Inputs marked data-choices: suggestions for what has been typed, fetched as JSON into the
     input's datalist (at most one request in flight; a pause of 150 ms between keys first). */
  function suggestChoices(input) {
    var list = document.getElementById(input.getAttribute("list"));
    var timer = null, asked = "";
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var query = input.value.trim();
        if (query === asked) return;
        asked = query;
        // From the origin: a page opened as http://user:password@host/ would otherwise lend fetch a
        // URL with credentials, which it refuses (the browser still sends the login it holds).
        var url = new URL(input.getAttribute("data-choices"), window.location.origin);
        url.searchParams.set("q", query);
        fetch(url.href, {credentials: "same-origin"})
          .then(function (response) { return response.ok ? response.json() : {accounts: []}; })
          .then(function (body) {
            if (asked !== query) return;  // an answer to an older question
            list.textContent = "";
            body.accounts.forEach(function (label) {
              var option = document.createElement("option");
              option.value = label;
              list.appendChild(option);
            });
          })
          .catch(function () { /* no suggestions: typing a name still works */ });
      }, 150);
    });
  }

  /* The merge-field picker: Insert puts the chosen code where the cursor was in the last of the
     form's subject and bodies to have had the focus (the HTML body at first).  A rich-text editor
     over a textarea takes the code itself by cancelling the "coretrack:insert" event. */
  function mergePicker(picker) {
    var form = picker.closest("form");
    var button = picker.querySelector("[data-merge-insert]");
    var choice = picker.querySelector("select");
    var target = form.querySelector("textarea[data-merge-target]") || form.querySelector("[data-merge-target]");
    // (A rich-text editor's area stands for its textarea: data-merge-for names it.)
    form.addEventListener("focusin", function (event) {
      var editor = event.target.closest("[data-merge-for]");
      if (editor) target = document.getElementById(editor.getAttribute("data-merge-for"));
      else if (event.target.hasAttribute("data-merge-target")) target = event.target;
    });
    button.hidden = false;
    button.addEventListener("click", function () {
      var code = choice.value;
      var event = new CustomEvent("coretrack:insert", {detail: code, cancelable: true});
      if (!target.dispatchEvent(event)) return;  // an editor took it
      var start = target.selectionStart, end = target.selectionEnd;
      target.value = target.value.slice(0, start) + code + target.value.slice(end);
      target.focus();
      target.setSelectionRange(start + code.length, start + code.length);
      target.dispatchEvent(new Event("input", {bubbles: true}));
    });
  }

  /* A list's "select all" box ticks every row of the page (shown only with script). */
  function selectAll(box) {
    var table = box.closest("table");
    box.hidden = false;
    box.addEventListener("change", function () {
      Array.prototype.forEach.call(table.querySelectorAll("tbody input[type=checkbox]"), function (row) {
        row.checked = box.checked;
      });
    });
  }

  /* A segment's condition row: the condition choice offers only the chosen field's operators
     (its option's data-ops); the server checks the pair all the same. */
  function conditionRow(field) {
    var op = field.closest("tr").querySelector("select[name^=op-]");
    function offer() {
      var chosen = field.options[field.selectedIndex];
      var allowed = (chosen && chosen.getAttribute("data-ops") || "").split(" ").filter(Boolean);
      Array.prototype.forEach.call(op.options, function (option) {
        option.hidden = option.disabled = allowed.length > 0 && allowed.indexOf(option.value) < 0;
      });
      if (op.selectedOptions.length && op.selectedOptions[0].disabled) {
        op.value = allowed[0];
      }
    }
    field.addEventListener("change", offer);
    offer();
  }

  /* A link to a folded part of the page (a details element) unfolds it. */
  function unfoldTarget(link) {
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (target && target.tagName === "DETAILS") {
      link.addEventListener("click", function () { target.open = true; });
    }
  }

  function each(selector, action) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), action);
  }

  each(".table-wrap table", labelCells);
  each("table[data-sortable]", makeSortable);
  each("form[data-confirm]", confirmFirst);
  each("form[data-progress]", showProgress);
  each("input[data-choices]", suggestChoices);
  each("[data-merge-picker]", mergePicker);
  each("main a[href^='#']:not([href='#'])", unfoldTarget);
  each("input[data-select-all]", selectAll);
  each("select[data-condition-field]", conditionRow);
})();
