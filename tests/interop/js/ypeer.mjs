// A real Yjs peer in Node: unmodified y-webrtc over @roamhq/wrtc, driven by JSON lines.
//
//   node ypeer.mjs [--name NAME]
//
// stdin, one command per line:   {"id": 1, "cmd": "insert", "args": {"index": 0, "text": "hi"}}
// stdout, one reply per command: {"id": 1, "ok": true, "result": null}
//                                {"id": 1, "ok": false, "error": "..."}
// and events, unprompted:        {"event": "peers", "added": [...], ...}
// Commands are those of peer_core.js. Exits after replying to "close", or when stdin ends.
// Diagnostics go to stderr.
import { WebSocket } from 'ws'
import wrtc from '@roamhq/wrtc'
import { createInterface } from 'node:readline'
import { createPeer } from './peer_core.js'

// lib0's signaling client calls `new WebSocket(url)`; Node 20 has no global WebSocket.
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = WebSocket

const nameAt = process.argv.indexOf('--name')
const name = nameAt >= 0 ? process.argv[nameAt + 1] : 'node'

const write = (message) => new Promise(resolve => process.stdout.write(JSON.stringify(message) + '\n', resolve))

const peer = createPeer({
  peerOpts: { wrtc, config: { iceServers: [] } }, // no STUN: host candidates only
  emit: (event) => { write(event) }
})

// y-webrtc drops a signaling message it cannot decrypt (wrong password) as an unhandled promise
// rejection. A browser logs it and goes on; Node would exit. Go on as a browser does, and say so.
process.on('unhandledRejection', (reason) => {
  const error = String(reason && reason.stack ? reason.stack : reason)
  process.stderr.write(`${name}: unhandled rejection: ${error}\n`)
  peer.changed({ event: 'unhandled-rejection', error: String(reason) })
})

const exit = async (code) => {
  await write({ event: 'exit', code })
  process.exit(code)
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', async (line) => {
  if (!line.trim()) return
  let message
  try {
    message = JSON.parse(line)
  } catch (err) {
    process.stderr.write(`${name}: not JSON: ${line}\n`)
    return
  }
  const { id, cmd, args } = message
  try {
    const result = await peer.call(cmd, args)
    await write({ id, ok: true, result: result === undefined ? null : result })
  } catch (err) {
    await write({ id, ok: false, error: String(err && err.message ? err.message : err) })
  }
  if (cmd === 'close') await exit(0)
})
lines.on('close', async () => {
  // stdin ended without "close": the driver went away.
  await peer.call('close').catch(() => {})
  await exit(0)
})
process.stderr.write(`${name}: ready (node ${process.version})\n`)
