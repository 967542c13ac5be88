/**
 * The "proxy alone" baselines of the proxy section: nginx `proxy_pass` and Caddy
 * `reverse_proxy` to the protected upstream with no forward auth, rendered from the minimal
 * configurations below, which keep everything of deploy/nginx/nginx.conf.template and
 * deploy/caddy/Caddyfile that a plain proxy of /api/ would have (workers, upstream
 * keep-alive pool, headers set on the upstream request, access log). The real templates are
 * run by test/helpers/proxies.ts `startNginx` / `startCaddy`; this file runs the baselines
 * through the same `runNginx` / `runCaddy` (own process group, foreground, always stopped).
 */
import { renderTemplate, runCaddy, runNginx, type RunningProxy } from '../../test/helpers/proxies.ts'
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
					keepalive_idle_conns_per_host 64
				}
			}
		}
	}
}
`

/** A baseline runs exactly like the shipped configurations do. */
export type BaselineProxy = RunningProxy

export async function startNginxAlone(upstream: string): Promise<BaselineProxy> {
  const port = await freePort()
  return runNginx(renderTemplate(NGINX_ALONE, { LISTEN_PORT: port, UPSTREAM: upstream }), port)
}

export async function startCaddyAlone(upstream: string): Promise<BaselineProxy> {
  const port = await freePort()
  return runCaddy(renderTemplate(CADDY_ALONE, { LISTEN_PORT: port, UPSTREAM: upstream }), port)
}
