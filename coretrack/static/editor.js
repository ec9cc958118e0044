/* coretrack: the rich-text editor over every textarea marked data-editor (progressive enhancement:
   without script, or without the vendored libraries, the textarea is edited as HTML as before).

   Squire (Fastmail's editor for composing email) edits the HTML in place; DOMPurify cleans every
   piece of HTML that enters it (pasted, dropped, or typed in the source view), so no script or event
   handler gets in.  The textarea stays the form's field: it follows each change, and "HTML source"
   shows it for editing the HTML itself.  The server cleans the HTML again when the email is made. */
(function () {
  "use strict";
  if (!window.Squire || !window.DOMPurify) return;

  function clean(html) {
    return window.DOMPurify.sanitize(html, {
      RETURN_DOM_FRAGMENT: true,
      FORBID_TAGS: ["style", "form", "input", "button", "select", "textarea", "iframe", "object", "embed"],
      FORBID_ATTR: ["srcset", "formaction"]
    });
  }

  var COMMANDS = [
    // label, the tag it toggles (for aria-pressed), on, off
    ["Bold", "B", "bold", "removeBold"],
    ["Italic", "I", "italic", "removeItalic"],
    ["Underline", "U", "underline", "removeUnderline"],
    ["Bulleted list", "UL", "makeUnorderedList", "removeList"],
    ["Numbered list", "OL", "makeOrderedList", "removeList"]
  ];

  function button(label, action) {
    var element = document.createElement("button");
    element.type = "button";
    element.className = "secondary";
    element.textContent = label;
    element.addEventListener("click", action);
    return element;
  }

  function enhance(textarea) {
    var label = document.querySelector("label[for='" + textarea.id + "']");
    if (label && !label.id) label.id = textarea.id + "-label";
    var toolbar = document.createElement("div");
    toolbar.className = "editor-toolbar toolbar";
    toolbar.setAttribute("role", "toolbar");
    toolbar.setAttribute("aria-label", "Formatting");
    var area = document.createElement("div");
    area.className = "editor-area";
    area.setAttribute("role", "textbox");
    area.setAttribute("aria-multiline", "true");
    if (label) area.setAttribute("aria-labelledby", label.id);
    area.setAttribute("data-merge-for", textarea.id);
    textarea.parentNode.insertBefore(toolbar, textarea);
    textarea.parentNode.insertBefore(area, textarea);

    var editor = new window.Squire(area, {blockTag: "P", sanitizeToDOMFragment: clean});
    editor.setHTML(textarea.value);
    var source = false;  // the HTML source view is showing
    textarea.hidden = true;
    // The editor's field may be empty while the page is valid; the server says what is missing.
    textarea.required = false;

    function sync() { if (!source) textarea.value = editor.getHTML(); }
    editor.addEventListener("input", sync);

    var formatting = COMMANDS.map(function (command) {
      var element = button(command[0], function () {
        if (editor.hasFormat(command[1])) editor[command[3]](); else editor[command[2]]();
        editor.focus();
        sync();
      });
      element.setAttribute("aria-pressed", "false");
      element.setAttribute("data-format", command[1]);
      return element;
    });
    formatting.push(button("Link", function () {
      var url = window.prompt("Link to (https://…, mailto:…)", "https://");
      if (url) editor.makeLink(url);
      sync();
    }));
    formatting.push(button("Clear formatting", function () { editor.removeAllFormatting(); sync(); }));
    formatting.forEach(function (element) { toolbar.appendChild(element); });
    editor.addEventListener("pathChange", function () {
      formatting.forEach(function (element) {
        var tag = element.getAttribute("data-format");
        if (tag) element.setAttribute("aria-pressed", String(editor.hasFormat(tag)));
      });
    });

    var sourceButton = button("HTML source", function () {
      source = !source;
      if (source) {
        textarea.value = editor.getHTML();
      } else {
        editor.setHTML(textarea.value);  // cleaned on the way in
        textarea.value = editor.getHTML();
      }
      textarea.hidden = !source;
      area.hidden = source;
      formatting.forEach(function (element) { element.disabled = source; });
      sourceButton.setAttribute("aria-pressed", String(source));
      (source ? textarea : area).focus();
    });
    sourceButton.setAttribute("aria-pressed", "false");
    sourceButton.classList.add("editor-source");
    toolbar.appendChild(sourceButton);

    // The merge-field picker's codes go in at the editor's cursor (in the source view, the textarea's).
    textarea.addEventListener("coretrack:insert", function (event) {
      if (source) return;
      event.preventDefault();
      editor.insertPlainText(event.detail, false);
      sync();
    });
    if (textarea.form) textarea.form.addEventListener("submit", sync);
  }

  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-editor]"), enhance);
})();
