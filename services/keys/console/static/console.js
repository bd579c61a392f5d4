// The console's only script: the copy button and the naming helpers. Every page works
// without it; this only saves typing.
"use strict";

document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const field = document.getElementById(copy.dataset.copy);
    const status = document.getElementById("copy-status");
    try {
      await navigator.clipboard.writeText(field.value);
      copy.textContent = "Copied";
      if (status) status.textContent = "The key is on your clipboard.";
    } catch (error) {
      field.focus();
      field.select();
      if (status) status.textContent = "Press Ctrl+C (or Cmd+C) to copy the selected key.";
    }
    return;
  }
  const suggestion = event.target.closest("[data-suggest-name]");
  if (suggestion) {
    const name = document.getElementById("name");
    name.value = suggestion.dataset.suggestName;
    name.focus();
    return;
  }
  const template = event.target.closest("[data-fill-template]");
  if (template) {
    const area = document.getElementById(template.dataset.fillTemplate);
    if (!area.value.trim()) area.value = template.dataset.template;
    area.focus();
  }
});
