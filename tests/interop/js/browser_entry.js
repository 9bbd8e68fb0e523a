// The browser peer: peer_core.js bundled with esbuild into the test page (index.html), as
// window.ypeer.call(cmd, args). Events go to window.crdtsyncEvent(event) when the driver exposed
// that function (Playwright's expose_function), and to window.ypeerEvents either way.
import { createPeer } from './peer_core.js'

window.ypeerEvents = []
const emit = (event) => {
  window.ypeerEvents.push(event)
  if (typeof window.crdtsyncEvent === 'function') {
    window.crdtsyncEvent(event).catch(() => {}) // the driver may be closing
  }
}
const peer = createPeer({
  peerOpts: { config: { iceServers: [] } }, // no STUN: host candidates only
  emit
})
// y-webrtc drops a signaling message it cannot decrypt (wrong password) as an unhandled rejection.
window.addEventListener('unhandledrejection', (e) => {
  peer.changed({ event: 'unhandled-rejection', error: String(e.reason) })
})
window.addEventListener('error', (e) => {
  peer.changed({ event: 'page-error', error: String(e.message) })
})

// Chromium in a loopback-only namespace exposes no ICE candidate unless the page holds a media
// permission; two browsers then cannot reach each other. Take a (fake) microphone first to fix it.
const takeMicrophone = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true })
  stream.getTracks().forEach(track => track.stop())
  return null
}

window.ypeer = {
  call: (cmd, args) => (cmd === 'takeMicrophone' ? takeMicrophone() : peer.call(cmd, args))
}
window.ypeerReady = true
