/** Real headless Chromium (Debian's) driven by playwright-core, for end-to-end tests. */
import { chromium, type Browser } from 'playwright-core'
import { requireBinary } from './services.ts'

export const chromiumBinary = requireBinary('chromium', ['/usr/bin/chromium'])

/**
 * Launches Chromium with every hostname resolved to loopback, so one local server can be
 * reached as an allowed origin and as a forbidden one.
 */
export async function launchBrowser(extraArgs: readonly string[] = []): Promise<Browser> {
  if (chromiumBinary.path === null) throw new Error('chromium not installed')
  return chromium.launch({
    executablePath: chromiumBinary.path,
    headless: true,
    args: [
      ...extraArgs,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * 127.0.0.1',
    ],
  })
}
