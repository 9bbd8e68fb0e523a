// CodeMirror 6 with y-codemirror.next on the room's Y.Text "text", over y-webrtc: the same
// room as `examples/editor.py --dialect y-webrtc`, cursors and names included.
// Query string: ?room=R&signaling=ws://...&name=N[&password=P]
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'
import { yCollab } from 'y-codemirror.next'
import { EditorState } from '@codemirror/state'
import { EditorView } from '@codemirror/view'

const params = new URLSearchParams(location.search)
const name = params.get('name') || 'browser'
const ydoc = new Y.Doc()
const provider = new WebrtcProvider(params.get('room') || 'notes', ydoc, {
  signaling: [params.get('signaling') || 'ws://127.0.0.1:8765'],
  password: params.get('password') || undefined
})
const ytext = ydoc.getText('text')
provider.awareness.setLocalStateField('user', { name, color: '#ffbc42', colorLight: '#ffbc4233' })

const view = new EditorView({
  state: EditorState.create({ doc: ytext.toString(), extensions: [yCollab(ytext, provider.awareness)] }),
  parent: document.getElementById('editor')
})

const status = document.getElementById('status')
const showStatus = () => {
  const others = [...provider.awareness.getStates()]
    .filter(([client, state]) => client !== ydoc.clientID && state.user)
    .map(([, state]) => state.user.name)
  status.textContent = `${name} (you) · ${others.join(' · ') || 'nobody else yet'}`
  status.dataset.others = others.join(',')
}
provider.awareness.on('change', showStatus)
showStatus()

window.sharedEditor = { Y, view, ytext, ydoc, provider } // for tests and the console
