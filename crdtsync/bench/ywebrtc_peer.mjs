// One y-webrtc peer for the benchmarks that race real Yjs peers (interop.py, child_peers.py): an
// unmodified WebrtcProvider on a Y.Doc over @roamhq/wrtc, one process per peer.
//
//   node ywebrtc_peer.mjs ROOT '{"room": "r", "signaling": "ws://127.0.0.1:PORT",
//                               "part": "a;", "expect": ["a;", "b;"], "timeoutMs": 20000,
//                               "deferred": false}'
//
// ROOT is the folder holding node_modules (from `npm ci`). The peer types `part` (default none)
// into doc.getText('text') and opens the provider, at once or, with `deferred`, on the `join`
// command. It prints JSON lines on stdout, times in ms since the epoch (performance.timeOrigin +
// performance.now(), comparable with Python's time.time()):
//   {"event": "ready"}               modules loaded, commands read
//   {"event": "opened", "t": T}      its signaling WebSocket is open (it subscribes at once)
//   {"event": "converged", "t": T}   its text holds every string of `expect` (if any)
// Commands, one per stdin line:
//   {"cmd": "join"}   open the provider (with `deferred`)
//   {"cmd": "linked", "peers": K}  {"event": "linked", "t": T} once K connections are open and
//                     each brought its sync step 2 (y-webrtc's own `synced` flag is set only
//                     while the room is not yet synced, so it is not used)
//   {"cmd": "load", "updates": [base64...], "length": L}  keep Yjs updates to type,
//                     then {"event": "loaded"}
//   {"cmd": "type"}   apply the loaded updates, one per event-loop turn (setImmediate), then
//                     {"event": "typed"}; and {"event": "complete", "t": T} once the text is
//                     L long
//   {"cmd": "watch"}  {"event": "watching"}, and from then on {"event": "seen", "length": L,
//                     "t": T} at each text change
//   {"cmd": "insert", "text": "x"}  append it; {"event": "inserted", "t": T}, T just before
//   {"cmd": "edit", "count": E, "text": "abc"}  E inserts at the start, one per event-loop turn,
//                                               then {"event": "edited"}
//   {"cmd": "state"}  {"event": "state", "length": L, "peers": P, "bytesSent": B,
//                     "messagesSent": M, "cpuMs": C}: B and M sum the 'data-channel' stats of
//                     every RTCPeerConnection, C is this process's user + system CPU time
//   {"cmd": "close"}  destroys the provider and exits
// A wait that runs out of time (timeoutMs), or any failure, prints
// {"event": "error", "error": "..."} and exits with status 1; so does the end of stdin, quietly,
// with status 0.
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const [root, settingsJson] = process.argv.slice(2)
const { room, signaling, part = '', expect = [], timeoutMs, deferred = false } = JSON.parse(settingsJson)

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
// A wait for a condition of the document or the room: resolves once `holds()` is true,
// checked now and at each call of the returned `check`; fails after timeoutMs.
const waitFor = (what, holds, describe = () => '') => {
  let check
  const done = new Promise(resolve => {
    const timer = setTimeout(() => fail(`${what}: not within ${timeoutMs} ms${describe()}`), timeoutMs)
    check = () => {
      if (!holds()) return false
      clearTimeout(timer)
      resolve(now())
      return true
    }
  })
  return { done, check }
}

const doc = new Y.Doc()
const text = doc.getText('text')
if (part) text.insert(0, part)

// Things waiting on a text change: each is dropped once its check holds.
let onChange = []
doc.on('update', () => { onChange = onChange.filter(check => !check()) })

if (expect.length > 0) {
  const converged = waitFor('converged', () => expect.every(piece => text.toString().includes(piece)))
  onChange.push(converged.check)
  converged.done.then(t => write({ event: 'converged', t }))
}

let provider = null
const openProvider = () => {
  provider = new WebrtcProvider(room, doc, {
    signaling: [signaling],
    maxConns: 20, // fixed: y-webrtc draws 20-34 at random
    peerOpts: { wrtc, config: { iceServers: [] } } // host candidates only, no STUN
  })
  for (const conn of provider.signalingConns) {
    conn.once('connect', () => write({ event: 'opened', t: now() }))
  }
  provider.on('peers', watchConnections)
}

// Connections that brought their sync step 2 (a y-protocols sync message: 0, then 1).
const synced = new WeakSet()
let onLink = []
const linkChanged = () => { onLink = onLink.filter(check => !check()) }
const watched = new WeakSet()
function watchConnections () {
  for (const conn of connections()) {
    if (watched.has(conn)) continue
    watched.add(conn)
    conn.peer.on('connect', linkChanged)
    conn.peer.on('close', linkChanged)
    conn.peer.on('data', data => {
      if (data[0] === 0 && data[1] === 1 && !synced.has(conn)) {
        synced.add(conn)
        linkChanged()
      }
    })
  }
}
// The provider opens its room once its key is derived: until then, no connection.
const connections = () => Array.from(provider?.room?.webrtcConns.values() ?? [])
const linkedCount = () => connections().filter(conn => conn.connected && synced.has(conn)).length

const dataChannelStats = async () => {
  let bytesSent = 0
  let messagesSent = 0
  for (const conn of connections()) {
    const pc = conn.peer._pc // simple-peer's RTCPeerConnection
    if (!pc) continue
    const report = await pc.getStats()
    report.forEach(stats => {
      if (stats.type === 'data-channel') {
        bytesSent += stats.bytesSent
        messagesSent += stats.messagesSent
      }
    })
  }
  return { bytesSent, messagesSent }
}

let loaded = { updates: [], length: 0 }
const nextTurn = () => new Promise(resolve => setImmediate(resolve))

const commands = {
  async join () {
    if (!provider) openProvider()
  },
  async linked ({ peers }) {
    const linked = waitFor(`linked with ${peers} peers`, () => linkedCount() >= peers, () => {
      const all = connections()
      const open = all.filter(conn => conn.connected).length
      return ` (${all.length} connections, ${open} open, ${linkedCount()} synced)`
    })
    if (!linked.check()) onLink.push(linked.check)
    write({ event: 'linked', t: await linked.done })
  },
  async load ({ updates, length }) {
    loaded = { updates: updates.map(update => Buffer.from(update, 'base64')), length }
    write({ event: 'loaded' })
  },
  async type () {
    const { updates, length } = loaded
    const complete = waitFor(`text of length ${length}`, () => text.length >= length)
    if (!complete.check()) onChange.push(complete.check)
    complete.done.then(t => write({ event: 'complete', t }))
    for (const update of updates) {
      Y.applyUpdate(doc, update)
      await nextTurn()
    }
    write({ event: 'typed' })
  },
  async watch () {
    let length = text.length
    onChange.push(() => {
      if (text.length !== length) {
        length = text.length
        write({ event: 'seen', length, t: now() })
      }
      return false // watches until the end
    })
    write({ event: 'watching' })
  },
  async insert ({ text: piece }) {
    const t = now()
    text.insert(text.length, piece)
    write({ event: 'inserted', t })
  },
  async edit ({ count, text: piece }) {
    for (let i = 0; i < count; i++) {
      text.insert(0, piece)
      await nextTurn()
    }
    write({ event: 'edited' })
  },
  async state () {
    const peers = connections().filter(conn => conn.connected)
    const { user, system } = process.cpuUsage()
    write({
      event: 'state',
      length: text.length,
      peers: peers.length,
      ...await dataChannelStats(),
      cpuMs: (user + system) / 1000
    })
  },
  async close () {
    if (provider) {
      provider.destroy()
      await provider.key // Room.destroy runs once the key is there
    }
    doc.destroy()
    process.exit(0)
  }
}

if (!deferred) openProvider()
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (!line.trim()) return
  const { cmd, ...args } = JSON.parse(line)
  const command = commands[cmd]
  if (!command) fail(`unknown command ${JSON.stringify(cmd)}`)
  command(args).catch(fail)
})
lines.on('close', () => process.exit(0))
write({ event: 'ready' })
