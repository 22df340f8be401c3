// Bundles the upload page (Uppy Dashboard + Tus) into ../static/dist,
// which the Go binary embeds. The output is generated but committed, so that
// `go install` gives the whole program; `make ui-check` proves it is exactly
// what this script builds from package-lock.json (the build is
// deterministic: same inputs, same bytes).
import * as esbuild from 'esbuild'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const outdir = fileURLToPath(new URL('../static/dist/', import.meta.url))
rmSync(outdir, { recursive: true, force: true })

const result = await esbuild.build({
  entryPoints: { upload: 'src/upload.js' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir,
  legalComments: 'linked',
  logLevel: 'info',
  metafile: true,
})
const outputs = Object.entries(result.metafile.outputs).map(([name, o]) => `${name} ${o.bytes} bytes`)
console.log(outputs.join('\n'))
