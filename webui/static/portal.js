// Small progressive enhancements for the server-rendered pages. Every
// form works without this script.
for (const form of document.querySelectorAll('form.confirm[data-confirm]')) {
  form.addEventListener('submit', (ev) => {
    if (!window.confirm(form.dataset.confirm)) ev.preventDefault()
  })
}
// Secrets shown once are selected, ready to copy.
for (const input of document.querySelectorAll('.secret input[readonly]')) {
  input.addEventListener('focus', () => input.select())
}
