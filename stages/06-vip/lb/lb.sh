#!/bin/bash
# lb.sh: PID 1 of an lb node. It writes keepalived's config from the environment, starts
# HAProxy and keepalived, and stops the container when either exits, so a dead half is
# never hidden behind a live one (Docker's restart policy then restarts both).
#   NODE       this node's name (lb1)            PRIORITY   its VRRP priority (higher wins)
#   PEER       the other node's address          VIP        the virtual address
#   PREEMPT    true: a returning higher-priority node takes the VIP back; false: nopreempt
#   TRACK      on: the VIP follows HAProxy's health (track script); off: only keepalived's
set -euo pipefail
: "${NODE:?}" "${PRIORITY:?}" "${PEER:?}" "${VIP:?}"
self=$(ip -4 -o addr show dev eth0 | awk '{ sub("/.*", "", $4); print $4; exit }')

preempt=""
[[ "${PREEMPT:-true}" == true ]] || preempt="nopreempt"
track="track_script {
        haproxy_serves
    }"
[[ "${TRACK:-on}" == on ]] || track="# track script off (TRACK=${TRACK})"

# VRRPv3 with 200 ms adverts: a backup declares the master dead after 3 adverts plus a
# skew of (256 - priority) / 256 adverts, about 0.7 s. Unicast to the peer: Docker's
# bridge does not need multicast, and the adverts go exactly where they are meant.
cat > /run/keepalived.conf <<CONF
global_defs {
    router_id ${NODE}
    script_user root
    enable_script_security
    vrrp_version 3
}

# Does this node's HAProxy serve? Asked over HTTP, because keepalived in a container
# cannot see other processes' PIDs the way pidof or track_process expect.
vrrp_script haproxy_serves {
    script "/usr/bin/curl -fsS -m 0.8 -o /dev/null http://127.0.0.1:8404/haproxy-serves"
    interval 1
    timeout 1
    fall 2
    rise 2
}

vrrp_instance VIP {
    state BACKUP
    interface eth0
    virtual_router_id 61
    priority ${PRIORITY}
    advert_int 0.2
    ${preempt}
    unicast_src_ip ${self}
    unicast_peer {
        ${PEER}
    }
    virtual_ipaddress {
        ${VIP}/24 dev eth0
    }
    ${track}
    notify "/usr/local/bin/vrrp-notify ${NODE}"
}
CONF

haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg &
hp=$!
keepalived --dont-fork --log-console --vrrp -f /run/keepalived.conf -p /run/keepalived.pid -r /run/vrrp.pid &
ka=$!
echo "lb: $NODE ($self) priority $PRIORITY, peer $PEER, VIP $VIP, preempt ${PREEMPT:-true}, track ${TRACK:-on}"

stop() {
    kill -TERM "$hp" "$ka" 2>/dev/null || true
    wait
    exit 0
}
trap stop TERM INT
wait -n "$hp" "$ka" || true
if kill -0 "$hp" 2>/dev/null; then gone=keepalived; else gone=haproxy; fi
echo "lb: $gone exited; stopping $NODE" >&2
kill -TERM "$hp" "$ka" 2>/dev/null || true
wait
exit 1
