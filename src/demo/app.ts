/**
 * The demo page: the proof of concept's React client, as plain DOM code on the browser SDK.
 * Loaded as a module script (no inline code), so it runs under the CSP the handler sets.
 */
import { connect, type WsdsSession } from '../client/index.ts'

interface DemoConfig {
  url: string
  keySet?: string
  keys: string[]
}

type Status = 'connecting' | 'challenged' | 'verified' | 'rejected' | 'closed' | 'error'

const GREETING_INTERVAL_MS = 30_000

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id)
  if (!el) throw new Error(`#${id} is missing from the page`)
  return el as T
}

const statusEl = element('status')
const idEl = element('connection-id')
const greetingEl = element('greeting')
const whoEl = element<HTMLInputElement>('who')

let session: WsdsSession | null = null
let greetingTimer: ReturnType<typeof setInterval> | undefined
let status: Status = 'connecting'

function setStatus(next: Status, text: string = next): void {
  status = next
  statusEl.dataset.state = next
  statusEl.textContent = text
}

function showGreeting(state: 'ok' | 'unauthorized' | 'error' | '', text: string): void {
  greetingEl.dataset.state = state
  greetingEl.textContent = text
}

async function loadConfig(): Promise<DemoConfig> {
  const res = await fetch('/demo/config.json', { cache: 'no-store' })
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`)
  const config = (await res.json()) as DemoConfig
  if (typeof config.url !== 'string' || !Array.isArray(config.keys)) throw new Error('config.json: needs "url" and "keys"')
  return config
}

// Fetched once: the key set is fixed for the life of the page, as in a real build.
const configPromise = loadConfig()

async function loadGreeting(s: WsdsSession): Promise<void> {
  const who = whoEl.value.trim() || 'World'
  try {
    const url = `/api/greeting?who=${encodeURIComponent(who)}`
    // Unverified, the page still asks (without an id), so it shows what the API answers a
    // page that cannot verify: "unauthorized".
    const res = await (s.verified ? s.fetch(url) : fetch(url))
    if (session !== s) return
    if (res.status === 401) return showGreeting('unauthorized', 'unauthorized')
    if (!res.ok) return showGreeting('error', `error: HTTP ${res.status}`)
    const body = (await res.json()) as { greeting?: unknown }
    if (session === s) showGreeting('ok', String(body.greeting))
  } catch (error) {
    if (session === s) showGreeting('error', `error: ${error instanceof Error ? error.message : String(error)}`)
  }
}

function stopGreetings(): void {
  clearInterval(greetingTimer)
  greetingTimer = undefined
}

function startGreetings(s: WsdsSession): void {
  stopGreetings()
  void loadGreeting(s)
  greetingTimer = setInterval(() => void loadGreeting(s), GREETING_INTERVAL_MS)
}

async function start(): Promise<void> {
  disconnect()
  setStatus('connecting')
  let config: DemoConfig
  try {
    config = await configPromise
  } catch (error) {
    setStatus('error', `error: ${error instanceof Error ? error.message : String(error)}`)
    return
  }
  // A second click may have started a session while this one waited for the config.
  disconnect()
  setStatus('connecting')
  const s = connect({ url: config.url, keys: config.keys, ...(config.keySet ? { keySet: config.keySet } : {}) })
  session = s
  startGreetings(s)
  // Every listener checks `session === s`: a replaced session still emits its final `closed`.
  s.on('connection', (id) => {
    if (session === s) idEl.textContent = id
  })
  s.on('challenge', () => {
    // A re-challenge leaves the connection verified (PROTOCOL.md), so the status stays.
    if (session === s && !s.verified) setStatus('challenged')
  })
  s.on('verified', (id) => {
    if (session !== s) return
    setStatus('verified')
    idEl.textContent = id
    startGreetings(s)
  })
  s.on('rejected', (reason) => {
    if (session === s) setStatus('rejected', `rejected: ${reason}`)
  })
  s.on('closed', ({ willReconnect }) => {
    if (session !== s) return
    idEl.textContent = ''
    if (willReconnect) setStatus('connecting')
    else {
      // Keep the reason on screen: it says why the session ended.
      if (status !== 'rejected') setStatus('closed')
    }
  })
  s.ready.catch((error: { code?: string; message?: string }) => {
    if (session === s && error.code === 'ERR_CONFIG') setStatus('error', `error: ${error.message}`)
  })
}

function disconnect(): void {
  const s = session
  if (!s) return
  session = null
  stopGreetings()
  s.close()
  setStatus('closed')
  idEl.textContent = ''
  showGreeting('', '')
}

element('connect').addEventListener('click', () => void start())
element('disconnect').addEventListener('click', disconnect)
whoEl.addEventListener('change', () => {
  if (session?.verified) void loadGreeting(session)
})

// `?connect=0` leaves connecting to the button.
if (new URLSearchParams(location.search).get('connect') !== '0') void start()
else setStatus('closed')
