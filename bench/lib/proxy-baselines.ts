/**
 * The "proxy alone" baselines of the proxy section: nginx `proxy_pass` and Caddy
 * `reverse_proxy` to the protected upstream with no forward auth, rendered from the minimal
 * configurations below, which keep everything of deploy/nginx/nginx.conf.template and
 * deploy/caddy/Caddyfile that a plain proxy of /api/ would have (workers, upstream
 * keep-alive pool, headers set on the upstream request, access log). The real templates are
 * run by test/helpers/proxies.ts `startNginx` / `startCaddy`; this file reuses its template
 * rendering and binaries, and runs the baseline the same way (own process group, foreground,
 * always stopped).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { caddyBinary, nginxBinary, renderTemplate } from '../../test/helpers/proxies.ts'
import { freePort } from '../../test/helpers/services.ts'

export const NGINX_ALONE = `worker_processes auto;
pid nginx.pid;
error_log stderr notice;
events {
    worker_connections 4096;
}
http {
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    # The template's log line, without the auth status it has no auth subrequest for.
    log_format plain '$remote_addr "$request" $status auth=- upstream=$upstream_addr rt=$request_time';
    access_log access.log plain;
    server_tokens off;
    # The same keep-alive pool as the template's wsds_app.
    upstream app {
        server {{UPSTREAM}};
        keepalive 64;
        keepalive_timeout 60s;
    }
    server {
        listen {{LISTEN_PORT}};
        server_name _;
        location /api/ {
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`

export const CADDY_ALONE = `{
	admin off
	auto_https off
	servers {
		timeouts {
			read_header 10s
			idle 2m
		}
	}
}

http://:{{LISTEN_PORT}} {
	log {
		output stderr
		format console
	}
	handle /api/* {
		route {
			uri strip_prefix /api
			reverse_proxy {{UPSTREAM}} {
				transport http {
					dial_timeout 5s
					keepalive 60s
					keepalive_idle_conns 64
				}
			}
		}
	}
}
`

export interface BaselineProxy {
  name: string
  port: number
  url: string
  configPath: string
  pid: number
  stop(): Promise<void>
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) kill(child, 'SIGKILL')
})

function kill(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    try {
      child.kill(signal)
    } catch {}
  }
}

function listening(port: number, child: ChildProcess, deadline: number, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`exited before listening:\n${output()}`))
      const sock = connect(port, '127.0.0.1')
      sock.once('connect', () => (sock.destroy(), resolve()))
      sock.once('error', () => {
        sock.destroy()
        if (Date.now() > deadline) reject(new Error(`not listening on ${port}:\n${output()}`))
        else setTimeout(attempt, 25)
      })
    }
    attempt()
  })
}

async function run(name: string, binary: string, args: (configPath: string, dir: string) => string[], config: string, file: string, env: (dir: string) => Record<string, string> = () => ({})): Promise<BaselineProxy> {
  const dir = mkdtempSync(join(tmpdir(), `wsds-bench-${name}-`))
  chmodSync(dir, 0o755)
  const configPath = join(dir, file)
  writeFileSync(configPath, config)
  const child = spawn(binary, args(configPath, dir), { cwd: dir, env: { ...process.env, ...env(dir) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  running.add(child)
  // Kept only until it listens (errors); afterwards drained, as Caddy logs every request.
  let out = ''
  let keep = true
  const onData = (c: Buffer) => {
    if (keep) out += c.toString()
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<void>((resolve) => child.once('exit', () => (running.delete(child), resolve())))
  const stop = async () => {
    if (running.has(child)) {
      kill(child, 'SIGTERM')
      const timer = setTimeout(() => kill(child, 'SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
      kill(child, 'SIGKILL')
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const port = Number(/listen (\d+);|http:\/\/:(\d+) \{/.exec(config)!.slice(1).find((v) => v !== undefined))
  try {
    await listening(port, child, Date.now() + 15_000, () => out)
  } catch (err) {
    await stop()
    throw new Error(`${name}: ${(err as Error).message}`)
  }
  keep = false
  out = ''
  return { name, port, url: `http://127.0.0.1:${port}`, configPath, pid: child.pid!, stop }
}

export async function startNginxAlone(upstream: string): Promise<BaselineProxy> {
  if (nginxBinary.path === null) throw new Error('nginx not installed')
  const config = renderTemplate(NGINX_ALONE, { LISTEN_PORT: await freePort(), UPSTREAM: upstream })
  return run('nginx-alone', nginxBinary.path, (conf, dir) => ['-p', dir + '/', '-c', conf, '-e', 'stderr', '-g', 'daemon off;'], config, 'nginx.conf')
}

export async function startCaddyAlone(upstream: string): Promise<BaselineProxy> {
  if (caddyBinary.path === null) throw new Error('caddy not installed')
  const config = renderTemplate(CADDY_ALONE, { LISTEN_PORT: await freePort(), UPSTREAM: upstream })
  return run('caddy-alone', caddyBinary.path, (conf) => ['run', '--config', conf, '--adapter', 'caddyfile'], config, 'Caddyfile', (dir) => {
    for (const sub of ['data', 'config', 'home']) mkdirSync(join(dir, sub), { recursive: true })
    return { XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), HOME: join(dir, 'home') }
  })
}
