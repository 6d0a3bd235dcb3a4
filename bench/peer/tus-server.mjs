// The peer for the tus scenarios: @tus/server with @tus/s3-store, as its README sets it up,
// on the same SeaweedFS the sagestore server uses. Configuration comes from the environment
// (the harness passes the weed endpoint and credentials); it prints "ready <url>" when listening.
import http from 'node:http'
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const env = (name) => {
  const value = process.env[name]
  if (!value) throw new Error(`missing ${name}`)
  return value
}

const store = new S3Store({
  partSize: Number(process.env.PEER_PART_SIZE || 8 * 1024 * 1024), // the harness passes sagestore's 16 MiB; 8 MiB is the s3-store default
  s3ClientConfig: {
    bucket: env('PEER_S3_BUCKET'),
    endpoint: env('PEER_S3_ENDPOINT'),
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: env('PEER_S3_ACCESS_KEY'), secretAccessKey: env('PEER_S3_SECRET_KEY') },
    // like sagestore's client: CRC32 checksums only where an API requires them
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  },
})

const tus = new Server({ path: '/files', datastore: store })
const host = '127.0.0.1'
const port = Number(env('PEER_PORT'))
http.createServer((req, res) => tus.handle(req, res)).listen(port, host, () => {
  console.log(`ready http://${host}:${port}/files/`)
})
