// One real Yjs peer: an unmodified y-webrtc WebrtcProvider on a Y.Doc whose shared type is
// doc.getText('text'), driven by commands. Shared by the Node peer (ypeer.mjs, commands as JSON
// lines on stdin) and the browser page (browser_entry.js, commands through page.evaluate), so both
// kinds of peer answer every command the same way.
//
// createPeer({ peerOpts, emit }) returns { call(cmd, args) -> Promise<result> }; emit(event) gets
// one plain object per thing that happened ({ event: 'peers', ... }), for the Python side's log and
// for its waits on Python predicates.
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'

export const createPeer = ({ peerOpts = {}, emit = () => {} }) => {
  const doc = new Y.Doc()
  const ytext = doc.getText('text')
  let provider = null
  const waiters = new Set() // { check() } re-run after every change

  const changed = (event) => {
    emit(event)
    for (const waiter of Array.from(waiters)) waiter.check()
  }

  const openConns = () =>
    provider && provider.room
      ? Array.from(provider.room.webrtcConns.values()).filter(conn => conn.connected)
      : []

  const remoteStates = () => {
    const states = {}
    if (provider) {
      provider.awareness.getStates().forEach((state, clientId) => {
        if (clientId !== doc.clientID) states[clientId] = state
      })
    }
    return states
  }

  // The names a wait_until predicate (a JS expression) can use; recomputed for every check.
  const scope = () => ({
    text: ytext.toString(),
    peers: openConns().length,
    states: remoteStates(),
    synced: Boolean(provider && provider.room && provider.room.synced),
    doc,
    provider
  })

  const evaluate = (predicate) => {
    const names = Object.keys(scope())
    // eslint-disable-next-line no-new-func
    const fn = new Function(...names, `return (${predicate})`)
    return () => {
      const values = scope()
      return Boolean(fn(...names.map(name => values[name])))
    }
  }

  // Resolves to true once predicate() holds, re-checked after every event. After timeoutMs it
  // rejects, or with settle: true resolves to a string saying what did not happen.
  const waitFor = (predicate, timeoutMs, describe, settle = false) => new Promise((resolve, reject) => {
    const waiter = {
      check () {
        let ok
        try {
          ok = predicate()
        } catch (err) {
          finish()
          reject(err)
          return
        }
        if (ok) {
          finish()
          resolve(true)
        }
      }
    }
    const timer = setTimeout(() => {
      finish()
      const { text, peers, synced } = scope()
      const detail = `${describe} not true within ${timeoutMs} ms ` +
        `(text=${JSON.stringify(text)}, peers=${peers}, synced=${synced})`
      if (settle) resolve(detail)
      else reject(new Error(detail))
    }, timeoutMs)
    const finish = () => {
      clearTimeout(timer)
      waiters.delete(waiter)
    }
    waiters.add(waiter)
    waiter.check()
  })

  const hookConn = (remote) => {
    const conn = provider.room && provider.room.webrtcConns.get(remote)
    if (!conn || conn.crdtsyncHooked) return
    conn.crdtsyncHooked = true
    conn.peer.on('connect', () => changed({ event: 'connect', remote, initiator: conn.peer.initiator }))
    conn.peer.on('close', () => changed({ event: 'close', remote }))
    conn.peer.on('error', err => changed({ event: 'webrtc-error', remote, error: String(err && err.message) }))
  }

  const commands = {
    // Opens the provider, then waits until the room exists (password rooms derive a key first)
    // and the signaling WebSocket is open. Returns { clientId, peerId }.
    async start ({ room, signaling, password = null, maxConns = 20, timeoutMs = 10000 }) {
      if (provider) throw new Error('start: already started')
      provider = new WebrtcProvider(room, doc, { signaling: [signaling], password, maxConns, peerOpts })
      provider.on('peers', e => {
        e.added.forEach(hookConn)
        changed({ event: 'peers', added: e.added, removed: e.removed, webrtcPeers: e.webrtcPeers })
      })
      provider.on('synced', e => changed({ event: 'synced', synced: e.synced }))
      provider.on('status', e => changed({ event: 'status', connected: e.connected }))
      provider.awareness.on('change', ({ added, updated, removed }, origin) => {
        if (origin !== 'local') changed({ event: 'awareness', added, updated, removed })
      })
      for (const conn of provider.signalingConns) {
        conn.on('connect', () => changed({ event: 'signaling-connect', url: conn.url }))
        conn.on('disconnect', () => changed({ event: 'signaling-disconnect', url: conn.url }))
      }
      await waitFor(
        () => provider.room !== null && provider.signalingConns.every(conn => conn.connected),
        timeoutMs, `start: signaling ${signaling} open`)
      return { clientId: doc.clientID, peerId: provider.room.peerId }
    },
    async insert ({ index, text }) {
      ytext.insert(index, text)
      return null
    },
    async text () {
      return ytext.toString()
    },
    async setAwareness ({ state }) {
      if (!provider) throw new Error('setAwareness: not started')
      provider.awareness.setLocalState(state)
      return null
    },
    async awarenessStates () {
      return remoteStates()
    },
    async peerCount () {
      return openConns().length
    },
    async waitUntil ({ predicate, timeoutMs }) {
      return waitFor(evaluate(predicate), timeoutMs, predicate, true)
    },
    async close () {
      if (provider) {
        const closing = provider
        provider = null
        closing.destroy()
        await closing.key // Room.destroy runs once the key is there
      }
      doc.destroy()
      return null
    }
  }

  doc.on('update', (_update, origin) => {
    changed({ event: 'update', local: origin == null }) // y-webrtc applies remote ones with origin = its Room
  })

  return {
    changed,
    async call (cmd, args = {}) {
      const command = commands[cmd]
      if (!command) throw new Error(`unknown command ${JSON.stringify(cmd)}`)
      return command(args)
    }
  }
}
