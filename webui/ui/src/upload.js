// The upload page: Uppy's Dashboard sends files to the portal's tus
// endpoint. The page's server-rendered markup carries the settings in data-
// attributes (no inline script, so the page keeps a strict CSP).
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'

const root = document.getElementById('uploader')
if (root) start(root)

function start (root) {
  const maxSize = Number(root.dataset.maxSize) || null
  const ttl = document.getElementById('ttl')
  const results = document.getElementById('results')
  const resultsBody = results.querySelector('tbody')

  const uppy = new Uppy({
    id: 'portal',
    autoProceed: false,
    restrictions: { maxFileSize: maxSize },
    // The tus metadata is the file's name and type, and the chosen
    // lifetime as "ttl" (seconds); the default sends none, so the server's
    // default applies.
    onBeforeUpload: (files) => {
      const chosen = ttl ? ttl.value : ''
      const out = {}
      for (const [id, f] of Object.entries(files)) {
        const meta = { name: f.meta.name }
        if (f.meta.type) meta.type = f.meta.type
        if (chosen) meta.ttl = chosen
        out[id] = { ...f, meta }
      }
      return out
    },
  })
  uppy.use(Dashboard, {
    inline: true,
    target: '#uppy',
    width: '100%',
    height: 380,
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    note: root.dataset.note || null,
    theme: 'light',
  })
  uppy.use(Tus, {
    endpoint: root.dataset.endpoint,
    // tus-js-client retries a broken request after these delays, resuming
    // from the offset the server has; the fingerprint kept in
    // localStorage lets a reloaded page resume the same file.
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    chunkSize: Number(root.dataset.chunkSize) || Infinity,
    removeFingerprintOnSuccess: true,
    limit: 3,
    // Every meta field onBeforeUpload kept (name and type are sent as
    // filename and filetype too).
    allowedMetaFields: true,
  })

  uppy.on('upload-success', (file, response) => {
    const uploadURL = response && response.uploadURL
    const uploadID = uploadURL ? uploadURL.replace(/\/+$/, '').split('/').pop() : ''
    showResult(file, uploadID)
  })

  async function showResult (file, uploadID) {
    const row = document.createElement('tr')
    row.dataset.uploadId = uploadID
    fill(row, file.name, '…', formatBytes(file.size), 'checking…')
    resultsBody.prepend(row)
    results.hidden = false
    try {
      const res = await fetch(root.dataset.lookup + encodeURIComponent(uploadID), {
        headers: { Accept: 'application/json' },
        credentials: 'same-origin',
      })
      const body = await res.json()
      if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText)
      const link = document.createElement('a')
      link.href = body.url
      link.textContent = body.id
      fill(row, body.filename, link, formatBytes(body.size_bytes), body.sha256)
      row.dataset.fileId = body.id
      row.dataset.sha256 = body.sha256
    } catch (err) {
      fill(row, file.name, '—', formatBytes(file.size), 'uploaded, but the file record could not be read: ' + err.message)
      row.lastChild.className = 'error'
    }
  }
}

// fill sets the cells of a result row (labelled for the phone layout).
function fill (row, name, id, size, sha256) {
  const cells = [['File', name, ''], ['ID', id, 'mono'], ['Size', size, 'num'], ['SHA-256', sha256, 'mono hash']]
  row.replaceChildren(...cells.map(([label, content, className]) => {
    const td = document.createElement('td')
    td.dataset.label = label
    if (className) td.className = className
    td.append(content)
    return td
  }))
}

function formatBytes (n) {
  if (!Number.isFinite(n)) return ''
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i]
}
