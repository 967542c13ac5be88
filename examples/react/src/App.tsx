import { useEffect, useState } from 'react'
import { WsdsProvider, useWsds } from 'wsds/react'
// The key set this build ships with: the same file the gateway loads (WSDS_KEYS_FILE).
import keySet from '@wsds-keys'

const REFRESH_MS = 30_000

export function App() {
  // Connect / Disconnect mount and unmount the provider: unmounting closes the socket, and
  // the gateway revokes its id on every node.
  const [connected, setConnected] = useState(true)
  return (
    <main>
      <h1>WebSocket Domain Security</h1>
      <div className="buttons">
        <button id="connect" type="button" disabled={connected} onClick={() => setConnected(true)}>Connect</button>
        <button id="disconnect" type="button" disabled={!connected} onClick={() => setConnected(false)}>Disconnect</button>
      </div>
      {connected ? (
        <WsdsProvider url="/wsds" keys={keySet.keys} keySet={keySet.id}>
          <Session />
          <Greeting />
        </WsdsProvider>
      ) : (
        <p id="status" data-state="closed">closed</p>
      )}
    </main>
  )
}

function Session() {
  const { status, connectionId, error } = useWsds()
  return (
    <section className="panel">
      <h2>Session</h2>
      <dl>
        <dt>Status</dt>
        <dd><span id="status" data-state={status}>{status}{error ? ` (${error.code})` : ''}</span></dd>
        <dt>connectionId</dt>
        <dd><code id="connection-id">{connectionId ?? ''}</code></dd>
      </dl>
    </section>
  )
}

function Greeting() {
  const { fetch, status } = useWsds()
  const [who, setWho] = useState('World')
  const [greeting, setGreeting] = useState('')
  useEffect(() => {
    let live = true
    const load = async () => {
      try {
        const res = await fetch(`/api/greeting?who=${encodeURIComponent(who || 'World')}`)
        const text = res.ok ? ((await res.json()) as { greeting: string }).greeting : res.status === 401 ? 'unauthorized' : `error ${res.status}`
        if (live) setGreeting(text)
      } catch {
        if (live) setGreeting('unauthorized')
      }
    }
    void load()
    const timer = setInterval(load, REFRESH_MS)
    return () => {
      live = false
      clearInterval(timer)
    }
  }, [fetch, who])
  return (
    <section className="panel">
      <h2>Protected service</h2>
      <p>
        <label htmlFor="who">Name</label>{' '}
        <input id="who" value={who} maxLength={100} onChange={(e) => setWho(e.target.value)} />
      </p>
      <output id="greeting">{status === 'rejected' ? 'unauthorized' : greeting}</output>
    </section>
  )
}
