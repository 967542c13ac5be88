/**
 * Serves the demo page: the HTML, the bundled app, its stylesheet and the configuration the
 * page connects with. Not a general static server: four fixed paths, all built or read once
 * at creation so a request never touches the disk or the bundler.
 */
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'

export interface DemoOptions {
  /** Key set the page is "built" with; its keys are served to anyone who loads the page. */
  keySet: { id: string; keys: readonly string[] }
  /** Path of the gateway's WebSocket endpoint, resolved by the page against its own origin (default '/wsds'). */
  wsPath?: string
  /** Content-Security-Policy of the page (default DEMO_CSP). */
  csp?: string
}

export type DemoHandler = (req: IncomingMessage, res: ServerResponse) => boolean

// The strict policy docs/integrations.md asks of pages: the SDK answers `program`
// challenges with no eval, nothing on the page is inline, and connect-src 'self' covers the
// same-origin ws: / wss: socket (CSP3). Styles fall under default-src 'self'.
export const DEMO_CSP = "default-src 'self'; script-src 'self'; connect-src 'self'"

/**
 * For a gateway that only sends `code` challenges (a deployment whose handlers do not yet
 * negotiate forms): the same policy plus the 'unsafe-eval' the code form needs.
 */
export const DEMO_CSP_CODE_FORM = "default-src 'self'; script-src 'self' 'unsafe-eval'; connect-src 'self'"

/** The demo app as one browser script, written next to the compiled handler by `npm run build` (scripts/build.ts). */
export const DEMO_BUNDLE_FILE = 'app.bundle.js'

/**
 * Bundles src/demo/app.ts with esbuild. esbuild is a devDependency: only the build and a
 * gateway run from the repository's sources call this, never the installed package.
 */
export async function bundleDemoApp(entry: string = fileURLToPath(new URL('./app.ts', import.meta.url))): Promise<Buffer> {
  let esbuild: typeof import('esbuild')
  try {
    esbuild = await import('esbuild')
  } catch (cause) {
    throw new Error(`the demo bundle ${DEMO_BUNDLE_FILE} is missing and esbuild is not installed to build it: run npm run build`, { cause })
  }
  const bundle = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    target: 'es2020',
    minify: true,
    logLevel: 'silent',
  })
  const js = bundle.outputFiles[0]
  if (!js) throw new Error('esbuild produced no output for the demo app')
  return Buffer.from(js.contents)
}

/** The prebuilt bundle when there is one (the package), else a fresh one (the repository's sources). */
async function loadDemoBundle(): Promise<Buffer> {
  try {
    return await readFile(new URL(`./${DEMO_BUNDLE_FILE}`, import.meta.url))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  return bundleDemoApp()
}

interface Asset {
  body: Buffer
  headers: Record<string, string>
}

export async function createDemoHandler(options: DemoOptions): Promise<DemoHandler> {
  const wsPath = options.wsPath ?? '/wsds'
  if (!wsPath.startsWith('/')) throw new TypeError(`wsPath must start with "/", got ${JSON.stringify(wsPath)}`)
  const { id, keys } = options.keySet
  const here = (file: string) => new URL(file, import.meta.url)

  const [html, css, js] = await Promise.all([readFile(here('./index.html')), readFile(here('./style.css')), loadDemoBundle()])

  const common = { 'x-content-type-options': 'nosniff' }
  const assets = new Map<string, Asset>()
  const page: Asset = {
    body: html,
    headers: { ...common, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache', 'content-security-policy': options.csp ?? DEMO_CSP },
  }
  assets.set('/', page)
  assets.set('/index.html', page)
  assets.set('/demo/app.js', {
    body: js,
    headers: { ...common, 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' },
  })
  assets.set('/demo/style.css', {
    body: css,
    headers: { ...common, 'content-type': 'text/css; charset=utf-8', 'cache-control': 'no-cache' },
  })
  assets.set('/demo/config.json', {
    body: Buffer.from(JSON.stringify({ url: wsPath, keySet: id, keys })),
    // no-store: after a key rotation a cached config would pin the page to a stale key set.
    headers: { ...common, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  })

  return (req, res) => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const asset = assets.get(q === -1 ? url : url.slice(0, q))
    if (!asset) return false
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // Drain the body we will not read, so a keep-alive socket stays usable.
      req.resume()
      const text = '{"error":"method-not-allowed"}'
      res.writeHead(405, { ...common, allow: 'GET, HEAD', 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
      return true
    }
    res.writeHead(200, { ...asset.headers, 'content-length': asset.body.length })
    res.end(req.method === 'HEAD' ? undefined : asset.body)
    return true
  }
}
