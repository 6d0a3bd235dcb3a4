// @tus/server with @tus/s3-store on the benchmark's SeaweedFS (defaults: 8 MiB parts, parts staged
// on disk). Started by bench/tus_vs_peer.py with: node server.mjs '<json config>'
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const config = JSON.parse(process.argv[2])
const datastore = new S3Store({
  s3ClientConfig: {
    bucket: config.bucket,
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: config.accessKey, secretAccessKey: config.secretKey },
  },
})
const server = new Server({ path: '/files', datastore })
server.listen({ host: '127.0.0.1', port: config.port }, () => console.log('ready'))
