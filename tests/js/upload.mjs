// Drives tus-js-client (Node) against a sagestore server for tests/test_tus_js.py.
// Usage: node upload.mjs '<json options>'
//   {endpoint, authorization, file, metadata, mode: plain|parallel|terminate|deferred|progress, protocol?,
//    chunkSize?, uploadUrl?}
// Prints one JSON line: {ok, url, error?, offset?, firstProgress}. Mode progress also prints {url, offset}
// after every chunk the server accepted (a test kills the process mid-upload); uploadUrl resumes that
// upload (tus-js-client asks its offset with HEAD first), and firstProgress is where it went on from.
import { readFileSync } from 'node:fs'
import * as tus from 'tus-js-client'

const args = JSON.parse(process.argv[2])
const deferred = args.mode === 'deferred'
const input = readFileSync(args.file)
let firstProgress = null

function finish(result) {
  process.stdout.write(JSON.stringify({ ...result, firstProgress }) + '\n')
  process.exit(result.ok ? 0 : 1)
}

const options = {
  endpoint: args.endpoint,
  headers: { Authorization: args.authorization },
  metadata: args.metadata,
  retryDelays: null,
  removeFingerprintOnSuccess: true,
  storeFingerprintForResuming: false,
  protocol: args.protocol || 'tus-v1',
  onProgress: (sent) => {
    if (firstProgress === null) firstProgress = sent
  },
  onError: (error) => finish({ ok: false, url: upload.url, error: String(error) }),
  onSuccess: () => finish({ ok: true, url: upload.url }),
}
if (args.chunkSize) options.chunkSize = args.chunkSize
if (args.uploadUrl) options.uploadUrl = args.uploadUrl
if (args.mode === 'progress') {
  options.onChunkComplete = (chunkSize, accepted) => {
    process.stdout.write(JSON.stringify({ url: upload.url, offset: accepted }) + '\n')
  }
}
if (deferred) {
  options.uploadLengthDeferred = true
  options.chunkSize = args.chunkSize || 5 * 1024 * 1024
}
if (args.mode === 'parallel') {
  options.parallelUploads = 4
}
if (args.mode === 'terminate') {
  // abort(true) after the first chunk: tus-js-client sends DELETE (termination)
  options.onChunkComplete = (chunkSize, accepted) => {
    upload.abort(true).then(
      () => finish({ ok: true, url: upload.url, offset: accepted }),
      (error) => finish({ ok: false, url: upload.url, error: String(error) }))
  }
  options.onSuccess = () => finish({ ok: false, url: upload.url, error: 'finished before it was aborted' })
}

const upload = new tus.Upload(input, options)
upload.start()
