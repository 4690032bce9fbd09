/* Keyward: small progressive enhancements. Every page works without this file.
 *
 * - [data-dialog="id"]: open the native <dialog> with that id instead of following the
 *   button's form to the no-JavaScript confirmation page.
 * - [data-copy="id"]: copy the text of the element with that id (navigator.clipboard).
 * - Token form: show the project field only for project tokens and the date field only for
 *   "Custom date".
 * - [data-autosubmit] selects submit their form on change (organization switcher).
 * - dialog[data-reopen]: a dialog the server sent (a confirmation, or one with an error in it) opens.
 *   A dialog whose form's htmx request succeeded closes.
 * - [data-autofocus]: after an htmx swap, focus moves to what the server marked (the value panel,
 *   the notice that replaced a revoked row, a row's menu after its action); a page load uses the
 *   native autofocus attribute.
 * - An actions menu (popover) closes when one of its items is chosen.
 * - A link shown as a button (role="button") is pressed with Space too.
 * - htmx errors that are not swapped (403, 404, 500, network) are shown in a notice.
 *
 * No inline scripts or handlers anywhere: a Content-Security-Policy allowing only our own
 * scripts can be set without changes.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function showToast(message) {
    var toast = document.getElementById("toast");
    if (!toast) return;
    toast.textContent = message;
    toast.hidden = false;
    clearTimeout(showToast.timer);
    showToast.timer = setTimeout(function () { toast.hidden = true; }, 6000);
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      area.remove();
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        dialog.showModal();
      }
      return;
    }
    var copier = event.target.closest("[data-copy]");
    if (copier) {
      var source = document.getElementById(copier.getAttribute("data-copy"));
      if (!source) return;
      var status = copier.parentElement.querySelector(".copy-status");
      copyText(source.textContent.trim()).then(function () {
        copier.classList.add("is-copied");
        if (status) status.textContent = "Copied to clipboard";
      }, function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Press Ctrl+C to copy";
      });
    }
  });

  // A click on a modal dialog's backdrop closes it, as people expect.
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof HTMLDialogElement && target.open) {
      var box = target.getBoundingClientRect();
      var inside = event.clientX >= box.left && event.clientX <= box.right &&
        event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) target.close();
    }
  });

  function syncTokenForm(form) {
    var type = form.querySelector("[data-controls-project]");
    var project = form.querySelector("[data-project-field]");
    if (project) project.hidden = !!type && type.value !== "project";
    var expiration = form.querySelector("[data-controls-date]");
    var date = form.querySelector("[data-date-field]");
    if (expiration && date) date.hidden = expiration.value !== "custom";
  }

  function focusMarked() {
    var target = document.querySelector("[data-autofocus]");
    if (!target) return;
    target.removeAttribute("data-autofocus");
    target.focus();
  }

  function enhance(root) {
    var forms = root.querySelectorAll ? root.querySelectorAll(".token-form") : [];
    Array.prototype.forEach.call(forms, syncTokenForm);
    if (root.classList && root.classList.contains("token-form")) syncTokenForm(root);
    var reopen = root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll("dialog[data-reopen]")) : [];
    if (root.matches && root.matches("dialog[data-reopen]")) reopen.push(root);
    reopen.forEach(function (dialog) {
      dialog.removeAttribute("data-reopen");
      if (!dialog.open && typeof dialog.showModal === "function") dialog.showModal();
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-controls-project], [data-controls-date]")) {
      syncTokenForm(target.closest("form"));
    }
    if (target.matches("[data-autosubmit]")) {
      target.form.requestSubmit();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    Array.prototype.forEach.call(document.querySelectorAll("[data-autofocus]"), function (element) {
      element.removeAttribute("data-autofocus");  // the autofocus attribute did it on load
    });
  });
  document.addEventListener("htmx:load", function (event) { enhance(event.target); });
  document.addEventListener("htmx:afterSettle", focusMarked);

  document.addEventListener("htmx:afterRequest", function (event) {
    var dialog = event.detail.elt.closest && event.detail.elt.closest("dialog");
    if (dialog && event.detail.successful && dialog.open) dialog.close();
  });

  document.addEventListener("submit", function (event) {
    var menu = event.target.closest("[popover]");
    if (menu && typeof menu.hidePopover === "function" && menu.matches(":popover-open")) menu.hidePopover();
  });

  document.addEventListener("keydown", function (event) {
    var link = event.target;
    if (event.key === " " && link.matches && link.matches("a[role=button]")) {
      event.preventDefault();
      link.click();
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = xhr.getResponseHeader("Content-Type") &&
      xhr.getResponseHeader("Content-Type").indexOf("text/plain") === 0 ? xhr.responseText : "";
    showToast(text || "Something went wrong (" + xhr.status + "). Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showToast("Keyward could not be reached. Check your connection and try again.");
  });
})();
