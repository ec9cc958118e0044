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

  var BLOCKS = [["P", "Paragraph"], ["H1", "Heading 1"], ["H2", "Heading 2"], ["H3", "Heading 3"]];

  /* The chosen lines become paragraphs or headings; lists and quotes keep their shape. */
  function headingChoice(editor, sync) {
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Paragraph or heading");
    select.className = "editor-block";
    BLOCKS.forEach(function (block) {
      var option = document.createElement("option");
      option.value = block[0];
      option.textContent = block[1];
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      var tag = select.value;
      editor.modifyBlocks(function (fragment) {
        Array.prototype.slice.call(fragment.childNodes).forEach(function (block) {
          if (!/^(P|DIV|H[1-6])$/.test(block.nodeName)) return;
          var replacement = document.createElement(tag);
          while (block.firstChild) replacement.appendChild(block.firstChild);
          fragment.replaceChild(replacement, block);
        });
        return fragment;
      });
      editor.focus();
      sync();
    });
    editor.addEventListener("pathChange", function () {
      var found = BLOCKS.filter(function (block) { return editor.hasFormat(block[0]); })[0];
      select.value = found ? found[0] : "P";
    });
    return select;
  }

  /* Text colour from the browser's own colour chooser: an inline style, which mail readers keep. */
  function colourChoice(editor, sync) {
    var input = document.createElement("input");
    input.type = "color";
    input.value = "#b42318";
    input.className = "editor-colour";
    input.setAttribute("aria-label", "Text colour");
    input.addEventListener("change", function () {
      editor.setTextColor(input.value);
      editor.focus();
      sync();
    });
    return input;
  }

  /* The link dialog: the link's text and its address, both editable; the selection is the text. */
  var SAFE_LINK = /^(https?:\/\/[^\s]+|mailto:[^\s]+|\$[a-z]+-[a-z0-9_]+\$)$/i;

  function linkDialog(editor, sync) {
    var dialog = document.getElementById("editor-link-dialog");
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.id = "editor-link-dialog";
      dialog.setAttribute("aria-labelledby", "editor-link-title");
      dialog.innerHTML =
        '<form method="dialog" novalidate>' +
        '<h2 id="editor-link-title">Link</h2>' +
        '<div class="field"><label for="editor-link-text">Text</label><input type="text" id="editor-link-text"></div>' +
        '<div class="field"><label for="editor-link-url">Address</label>' +
        '<input type="url" id="editor-link-url" placeholder="https://…" aria-describedby="editor-link-help">' +
        '<p class="help" id="editor-link-help">https://…, mailto:… or a merge field</p>' +
        '<p class="error" id="editor-link-error" role="alert" hidden></p></div>' +
        '<div class="toolbar"><button type="submit" value="ok">Insert link</button>' +
        '<button type="submit" value="cancel" class="secondary" formnovalidate>Cancel</button></div></form>';
      document.body.appendChild(dialog);
    }
    var text = dialog.querySelector("#editor-link-text");
    var url = dialog.querySelector("#editor-link-url");
    var error = dialog.querySelector("#editor-link-error");
    var range = editor.getSelection();
    text.value = editor.getSelectedText();
    url.value = "";
    if (editor.hasFormat("A")) {  // inside a link: edit that link, its whole text
      var node = range.startContainer;
      var anchor = (node.nodeType === 1 ? node : node.parentElement).closest("a");
      if (anchor) {
        url.value = anchor.getAttribute("href") || "";
        text.value = anchor.textContent;
        range = document.createRange();
        range.selectNode(anchor);
      }
    }
    error.hidden = true;
    var form = dialog.querySelector("form");
    form.onsubmit = function (event) {
      if (event.submitter && event.submitter.value === "cancel") return;
      var address = url.value.trim();
      if (!SAFE_LINK.test(address)) {
        event.preventDefault();
        error.textContent = "Give an address starting with https://, http:// or mailto:.";
        error.hidden = false;
        url.focus();
        return;
      }
      var link = document.createElement("a");
      link.setAttribute("href", address);
      link.textContent = text.value.trim() || address;
      editor.focus();
      editor.setSelection(range);
      editor.insertHTML(link.outerHTML);
      sync();
    };
    dialog.showModal();
    (text.value ? url : text).focus();
  }

  /* A picture from this computer, put in the HTML as a data: URL: it is stored with the email and
     sent as an inline part of each message (no address on the web to fetch it from). */
  var IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
  var IMAGE_MAX_BYTES = 300 * 1024;  // the HTML body holds 500 kB at most, pictures included

  function imageButton(editor, sync, toolbar) {
    var input = document.createElement("input");
    input.type = "file";
    input.accept = IMAGE_TYPES.join(",");
    input.hidden = true;
    input.setAttribute("aria-label", "Image file");
    var problem = document.createElement("p");
    problem.className = "error editor-problem";
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    toolbar.parentNode.insertBefore(problem, toolbar.nextSibling);
    toolbar.appendChild(input);
    var element = button("Image", function () { input.value = ""; input.click(); });
    input.addEventListener("change", function () {
      var file = input.files[0];
      problem.hidden = true;
      if (!file) return;
      if (IMAGE_TYPES.indexOf(file.type) < 0 || file.size > IMAGE_MAX_BYTES) {
        problem.textContent = file.name + ": " + (IMAGE_TYPES.indexOf(file.type) < 0
          ? "choose a PNG, JPEG, GIF or WebP picture." : "at most 300 kB a picture; make it smaller first.");
        problem.hidden = false;
        return;
      }
      var reader = new FileReader();
      reader.addEventListener("load", function () {
        editor.focus();
        editor.insertImage(reader.result, {alt: file.name.replace(/\.[^.]*$/, "")});
        sync();
      });
      reader.readAsDataURL(file);
    });
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
    formatting.push(button("Link", function () { linkDialog(editor, sync); }));
    formatting.push(headingChoice(editor, sync));
    formatting.push(colourChoice(editor, sync));
    formatting.push(imageButton(editor, sync, toolbar));
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
    // The form's merge-field picker joins the toolbar (coretrack.js has already wired it).
    var picker = textarea.form && textarea.form.querySelector("[data-merge-picker]");
    if (picker) {
      picker.classList.add("in-toolbar");
      toolbar.insertBefore(picker, sourceButton);
    }

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
