# shellcheck shell=bash
# Smoke test of the nginx stand-in: sourced by `tools/standins/standins.sh --smoke`, which sets
# IMAGE and SMOKE_TMP and provides the helpers (smoke_run, smoke_client, wait_until, ...).

# A reverse proxy in front of a second nginx (its default page), with upstream keepalive:
# what the load-balancing stages configure through a mounted conf.d file.
cat >"$SMOKE_TMP/proxy.conf" <<'CONF'
upstream app {
    server backend:80;
    keepalive 8;
}
server {
    listen 80;
    location = /healthz {
        access_log off;
        return 200 "ok\n";
    }
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
CONF
chmod 0644 "$SMOKE_TMP/proxy.conf"

smoke_run backend "$IMAGE"
wait_until 30 "backend: default page on :80" smoke_exec backend curl -fsS http://127.0.0.1/
smoke_run front -v "$SMOKE_TMP/proxy.conf:/etc/nginx/conf.d/default.conf:ro" "$IMAGE"
wait_until 30 "front: /healthz answers" smoke_exec front curl -fsS http://127.0.0.1/healthz

smoke_exec front nginx -t >/dev/null 2>&1 || smoke_fail "nginx -t rejects the mounted config"
smoke_ok "nginx -t accepts the mounted conf.d file"
body=$(smoke_client "$IMAGE" curl -fsS http://front/) || smoke_fail "curl http://front/ from another container failed"
grep -q 'Welcome to nginx!' <<<"$body" || smoke_fail "proxied page not served: $body"
smoke_ok "curl from another container through the proxy to the backend"
logs=$(timeout 30 docker logs "$(ctr backend)" 2>/dev/null)
grep -q '"GET / HTTP/1.1" 200' <<<"$logs" || smoke_fail "backend access log is not on stdout"
smoke_ok "access log on stdout (docker logs)"
# shellcheck disable=SC2016 # expanded in the container
workers=$(smoke_exec front bash -c 'for d in /proc/[0-9]*; do
	case $(tr "\0" " " <"$d/cmdline" 2>/dev/null) in "nginx: worker process"*) stat -c %U "$d" ;; esac
done | sort -u')
expect_eq "worker processes run as the nginx user" nginx "$workers"
expect_eq "master is PID 1 as root" "root nginx" "$(pid1 front)"
stop_within front 10
