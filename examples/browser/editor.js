// A shared text editor: a <textarea> bound to the Y.Text "text" of a y-webrtc room.
// Query string: ?room=notes&signaling=ws://127.0.0.1:4444[&password=P][&ice=stun:host:3478 ...]
// Built by `make browser-example` into dist/editor.js (esbuild bundles yjs and y-webrtc).
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'

const query = new URLSearchParams(location.search)
const room = query.get('room') || 'notes'
const signaling = query.get('signaling') || 'ws://127.0.0.1:4444'
const password = query.get('password') || null
// No ICE server by default: peers on one machine or LAN reach each other by host candidates.
const iceServers = query.getAll('ice').map(urls => ({ urls }))

const doc = new Y.Doc()
const ytext = doc.getText('text')
const provider = new WebrtcProvider(room, doc, {
  signaling: [signaling],
  password,
  peerOpts: { config: { iceServers } }
})

const area = document.getElementById('text')
const status = document.getElementById('status')
const binding = {} // the origin of our own transactions, so we skip them when observing

// UTF-16 surrogate pairs must not be split by a diff boundary.
const isHigh = code => code >= 0xd800 && code <= 0xdbff
const isLow = code => code >= 0xdc00 && code <= 0xdfff

// textarea -> Y.Text: replace the one span between the common prefix and the common suffix.
area.addEventListener('input', () => {
  const before = ytext.toString()
  const after = area.value
  let start = 0
  while (start < before.length && start < after.length && before[start] === after[start]) start++
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--
  let end = 0
  while (end < before.length - start && end < after.length - start &&
         before[before.length - 1 - end] === after[after.length - 1 - end]) end++
  if (end > 0 && isLow(before.charCodeAt(before.length - end))) end--
  doc.transact(() => {
    const removed = before.length - start - end
    if (removed > 0) ytext.delete(start, removed)
    const inserted = after.slice(start, after.length - end)
    if (inserted) ytext.insert(start, inserted)
  }, binding)
})

// Y.Text -> textarea: set the new value and move the selection through the remote change.
ytext.observe((event, transaction) => {
  if (transaction.origin === binding) return
  let { selectionStart, selectionEnd } = area
  let index = 0
  for (const op of event.delta) {
    if (op.retain) {
      index += op.retain
    } else if (op.insert) {
      const length = op.insert.length
      if (index < selectionStart) selectionStart += length
      if (index < selectionEnd) selectionEnd += length
      index += length
    } else if (op.delete) {
      if (index < selectionStart) selectionStart -= Math.min(op.delete, selectionStart - index)
      if (index < selectionEnd) selectionEnd -= Math.min(op.delete, selectionEnd - index)
    }
  }
  area.value = ytext.toString()
  area.setSelectionRange(selectionStart, selectionEnd)
})

// Status line: open WebRTC connections, and other tabs of this browser (BroadcastChannel).
let signalingUp = false
const showStatus = () => {
  const conns = provider.room ? Array.from(provider.room.webrtcConns.values()) : []
  const peers = conns.filter(conn => conn.connected).length
  const tabs = provider.room ? provider.room.bcConns.size : 0
  status.textContent = `room "${room}" · ${peers} peer${peers === 1 ? '' : 's'}` +
    (tabs ? ` · ${tabs} other tab${tabs === 1 ? '' : 's'}` : '') +
    ` · signaling ${signalingUp ? 'connected' : 'connecting…'} (${signaling})` +
    (password ? ' · password room' : '')
  status.dataset.peers = String(peers)
}
provider.on('peers', ({ added }) => {
  for (const id of added) {
    const conn = provider.room && provider.room.webrtcConns.get(id)
    if (conn) {
      conn.peer.on('connect', showStatus)
      conn.peer.on('close', showStatus)
    }
  }
  showStatus()
})
for (const conn of provider.signalingConns) {
  conn.on('connect', () => { signalingUp = true; showStatus() })
  conn.on('disconnect', () => { signalingUp = false; showStatus() })
}
showStatus()
area.value = ytext.toString()
area.disabled = false
area.focus()
window.editor = { doc, ytext, provider } // for the console (and the tests)
