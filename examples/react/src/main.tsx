/**
 * The proof of concept's React client (status, connectionId, Connect / Disconnect, a
 * greeting panel that calls the protected API), rebuilt on `wsds/react`.
 */
import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App.tsx'

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
