// One y-webrtc peer for `crdtsync bench interop` (interop.py): an unmodified WebrtcProvider on a
// Y.Doc over @roamhq/wrtc, one process per peer.
//
//   node ywebrtc_peer.mjs ROOT '{"room": "r", "signaling": "ws://127.0.0.1:PORT",
//                               "part": "a;", "expect": ["a;", "b;"], "timeoutMs": 20000}'
//
// ROOT is the folder holding node_modules (from `npm ci`). The peer types `part` into
// doc.getText('text'), opens the provider and prints JSON lines on stdout, times in ms since the
// epoch (performance.timeOrigin + performance.now(), comparable with Python's time.time()):
//   {"event": "opened", "t": T}      its signaling WebSocket is open (it subscribes at once)
//   {"event": "converged", "t": T}   its text holds every string of `expect`
// Then it answers one command per stdin line:
//   {"cmd": "edit", "count": E, "text": "abc"}  E inserts at the start, one per event-loop turn,
//                                               then {"event": "edited"}
//   {"cmd": "state"}  {"event": "state", "length": L, "peers": P, "bytesSent": B}: B sums
//                     bytesSent of the 'data-channel' stats of every RTCPeerConnection
//   {"cmd": "close"}  destroys the provider and exits
// A wait that runs out of time, or any failure, prints {"event": "error", "error": "..."} and
// exits with status 1; so does the end of stdin, quietly, with status 0.
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const [root, settingsJson] = process.argv.slice(2)
const { room, signaling, part, expect, timeoutMs } = JSON.parse(settingsJson)

// Resolved from ROOT, not from this file, so that an installed package finds the repo's modules.
// Everything through one require, so y-webrtc and this script share one copy of yjs.
const require = createRequire(join(root, 'node_modules', '.crdtsync-bench.cjs'))
const Y = require('yjs')
const { WebrtcProvider } = require('y-webrtc')
const { WebSocket } = require('ws')
const wrtc = require('@roamhq/wrtc')

// lib0's signaling client calls `new WebSocket(url)`; Node 20 has no global WebSocket.
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = WebSocket

const now = () => performance.timeOrigin + performance.now()
const write = (message) => process.stdout.write(JSON.stringify(message) + '\n')
const fail = (error) => {
  write({ event: 'error', error: String(error && error.stack ? error.stack : error) })
  process.exit(1)
}
process.on('unhandledRejection', fail)
const deadline = setTimeout(() => fail(`not converged within ${timeoutMs} ms`), timeoutMs)

const doc = new Y.Doc()
const text = doc.getText('text')
text.insert(0, part)

const provider = new WebrtcProvider(room, doc, {
  signaling: [signaling],
  maxConns: 20, // fixed: y-webrtc draws 20-34 at random
  peerOpts: { wrtc, config: { iceServers: [] } } // host candidates only, no STUN
})
for (const conn of provider.signalingConns) {
  conn.once('connect', () => write({ event: 'opened', t: now() }))
}

const holdsAll = () => expect.every(piece => text.toString().includes(piece))
const onUpdate = () => {
  if (!holdsAll()) return
  const t = now()
  doc.off('update', onUpdate)
  clearTimeout(deadline)
  write({ event: 'converged', t })
}
doc.on('update', onUpdate)

const bytesSent = async () => {
  let total = 0
  for (const conn of provider.room.webrtcConns.values()) {
    const pc = conn.peer._pc // simple-peer's RTCPeerConnection
    if (!pc) continue
    const report = await pc.getStats()
    report.forEach(stats => { if (stats.type === 'data-channel') total += stats.bytesSent })
  }
  return total
}

const commands = {
  async edit ({ count, text: piece }) {
    for (let i = 0; i < count; i++) {
      text.insert(0, piece)
      await new Promise(resolve => setImmediate(resolve))
    }
    write({ event: 'edited' })
  },
  async state () {
    const peers = Array.from(provider.room.webrtcConns.values()).filter(conn => conn.connected)
    write({ event: 'state', length: text.length, peers: peers.length, bytesSent: await bytesSent() })
  },
  async close () {
    provider.destroy()
    await provider.key // Room.destroy runs once the key is there
    doc.destroy()
    process.exit(0)
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (!line.trim()) return
  const { cmd, ...args } = JSON.parse(line)
  const command = commands[cmd]
  if (!command) fail(`unknown command ${JSON.stringify(cmd)}`)
  command(args).catch(fail)
})
lines.on('close', () => process.exit(0))
