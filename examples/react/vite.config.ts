import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))
const gateway = process.env.WSDS_GATEWAY ?? 'http://127.0.0.1:8080'

export default defineConfig({
  root: here('.'),
  resolve: {
    alias: {
      // The key set the gateway loads (run.mjs writes it); a real app imports its own file.
      '@wsds-keys': process.env.WSDS_EXAMPLE_KEYS ?? here('./keys/current.json'),
      // Inside this repository the example runs on the sources; an app installs `wsds`.
      'wsds/react': here('../../src/react/index.ts'),
    },
  },
  oxc: { jsx: { runtime: 'automatic' } },
  server: {
    port: 5173,
    strictPort: true,
    // One origin for the page, the socket and the API, as behind a production proxy.
    proxy: {
      '/wsds': { target: gateway, ws: true },
      '/api': { target: gateway },
    },
  },
})
