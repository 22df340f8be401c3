// Uploads a file with tus-js-client (the Node suite's copy, testdata/node), in
// chunks, aborting after the first and resuming by the upload's URL: the
// URL the portal issued must survive the round trip as the client keeps
// and reuses it. Usage: node tusjs-resume.cjs ENDPOINT FILE CHUNKSIZE
// Prints {"url": ...} on success.
const path = require('node:path')
const fs = require('node:fs')
const tus = require(path.join(__dirname, '..', '..', 'testdata', 'node', 'node_modules', 'tus-js-client'))

const [endpoint, file, chunk] = process.argv.slice(2)
const data = fs.readFileSync(file)
const chunkSize = Number(chunk)

function resume (uploadUrl) {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      uploadUrl,
      chunkSize,
      retryDelays: [100, 300, 1000],
      metadata: { filename: 'tusjs.bin' },
      onError: reject,
      onSuccess: () => resolve(up.url)
    })
    up.start()
  })
}

async function main () {
  // First: stop after one chunk.
  let url = await new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      endpoint,
      chunkSize,
      metadata: { filename: 'tusjs.bin' },
      onError: reject,
      onChunkComplete: () => { up.abort().then(() => resolve(up.url)) },
      onSuccess: () => reject(new Error('finished before the abort'))
    })
    up.start()
  })
  // Then: resume from the URL alone.
  url = await resume(url)
  process.stdout.write(JSON.stringify({ url }) + '\n')
}

main().catch((err) => { console.error(String(err)); process.exit(1) })
