#!/bin/bash
# Run inside the arm64 VM of `cargo xtask test-arm64` (systemd as PID 1) by
# the image's lb-arm64-test.service, from the host's 9p share at /share,
# which also holds lb.deb and `args`. Prints one line per check:
#   CHECK ok <seconds> <name>
#   CHECK FAILED <seconds> <name> -- <detail>
# one `BENCH <variant> <round> <requests/s>` per benchmark run, and DONE.
#
# The VM is a host this test created (booted from a throwaway snapshot of
# a disk made for it; its only network is what this script builds): the
# packaged unit runs lb in the VM's root namespace, as on a Pi, and every
# other host (client, switch, real servers) has its own namespace. Nothing
# here reaches outside the VM.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C SYSTEMD_PAGER=
REQUESTS=1000 CONCURRENCY=30 ROUNDS=3
# shellcheck disable=SC1091
[ -f /share/args ] && . /share/args
P=harm64
VIP=192.168.253.120
RUN=/run/$P

ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

# run_check NAME COMMAND...: runs it, prints the CHECK line with its time
# and, on failure, the last lines it printed.
run_check() {
    local name=$1 t0 out rc secs
    shift
    t0=$(date +%s.%N)
    out=$("$@" 2>&1)
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ]; then
        echo "CHECK ok $secs $name"
    else
        echo "CHECK FAILED $secs $name -- $(printf '%s' "$out" | tail -n 8 | tr '\n' ' ')"
    fi
    return "$rc"
}

# nginx as real server N in namespace rsN: answers its name on /, and a
# 1 MiB /big.bin.
nginx_start() {
    local d=$RUN/rs$1
    mkdir -p "$d/www"
    echo "realserver$1" > "$d/www/index.html"
    head -c 1048576 /dev/zero > "$d/www/big.bin"
    chmod -R a+rX "$d"
    cat > "$d/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 1024; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server { listen 80; root $d/www; }
}
EOF
    ns "rs$1" nginx -c "$d/nginx.conf"
}

served() { wc -l < "$RUN/rs$1/access.log" 2>/dev/null || echo 0; }

switch_ns() {
    ip netns add "$P-switch"
    ns switch ip link set lo up
    ns switch ip link add br0 type bridge
    ns switch ip link set br0 up
}

# A veth from namespace NS (as eth0) to a port PORT of the switch.
to_switch() {
    ip netns add "$P-$1"
    ns "$1" ip link set lo up
    ip link add "$2" type veth peer name eth0 netns "$P-$1"
    ip link set "$2" netns "$P-switch"
    ns switch ip link set "$2" master br0
    ns switch ip link set "$2" up
    ns "$1" ip link set eth0 up
}

# Seed 001: client -- lb0 [VM: lb] lb1 -- switch -- rs1..rs3, the real
# servers' gateway is lb1. Veths as `ip link add` makes them (a Pi's user
# has no tuning to do in generic mode).
nat_topology() {
    switch_ns
    ip netns add "$P-client"
    ns client ip link set lo up
    ip link add lb0 type veth peer name eth0 netns "$P-client"
    ns client ip addr add 192.168.253.1/24 dev eth0
    ns client ip link set eth0 up
    ns client ip route add default via 192.168.253.254
    ip addr add 192.168.253.254/24 dev lb0
    ip addr add "$VIP/24" dev lb0
    ip link set lb0 up
    ip link add lb1 type veth peer name lb netns "$P-switch"
    ns switch ip link set lb master br0
    ns switch ip link set lb up
    ip addr add 172.16.14.120/24 dev lb1
    ip link set lb1 up
    sysctl -qw net.ipv4.ip_forward=1
    # As the README asks for IPv4 NAT: replies from the VIP that the
    # kernel segments are local-source packets.
    sysctl -qw net.ipv4.conf.lb0.accept_local=1 net.ipv4.conf.lb1.accept_local=1
    for i in 1 2 3; do
        to_switch "rs$i" "rs$i"
        ns "rs$i" ip addr add "172.16.14.12$i/24" dev eth0
        ns "rs$i" ip route add default via 172.16.14.120
        nginx_start "$i"
    done
}

# Seed 000: client, balancer (lb0) and rs1..rs3 on one switch; the real
# servers hold the VIP on lo and do not announce it; forwarding off.
dr_topology() {
    switch_ns
    to_switch client client
    ns client ip addr add 192.168.253.1/24 dev eth0
    ip link add lb0 type veth peer name lb netns "$P-switch"
    ns switch ip link set lb master br0
    ns switch ip link set lb up
    ip addr add 192.168.253.254/24 dev lb0
    ip addr add "$VIP/24" dev lb0
    ip link set lb0 up
    sysctl -qw net.ipv4.ip_forward=0
    for i in 1 2 3; do
        to_switch "rs$i" "rs$i"
        for dev in all eth0; do
            ns "rs$i" sysctl -qw "net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2"
        done
        ns "rs$i" ip addr add "$VIP/32" dev lo
        ns "rs$i" ip addr add "192.168.253.12$i/24" dev eth0
        nginx_start "$i"
    done
}

teardown() {
    for i in 1 2 3; do
        [ -f "$RUN/rs$i/nginx.pid" ] && kill "$(cat "$RUN/rs$i/nginx.pid")" 2>/dev/null
    done
    sleep 1
    for n in client switch rs1 rs2 rs3; do ip netns del "$P-$n" 2>/dev/null; done
    ip link del lb0 2>/dev/null
    ip link del lb1 2>/dev/null
    rm -rf "$RUN"
}

# /etc/lb/lb.toml for FORWARDING on INTERFACES, real servers PREFIX.121-123.
write_config() {
    {
        echo '[agent]'
        echo "interfaces = [$2]"
        echo '# As on a Raspberry Pi 4, whose NIC driver has no native XDP.'
        echo 'xdp_mode = "generic"'
        echo
        echo '[[virtual_server]]'
        echo 'name = "web"'
        echo "address = \"$VIP\""
        echo 'port = 80'
        echo 'protocol = "tcp"'
        echo "forwarding = \"$1\""
        for i in 1 2 3; do
            echo
            echo '  [[virtual_server.real_server]]'
            echo "  address = \"$3.12$i\""
        done
    } > /etc/lb/lb.toml
}

vm_is_arm64() {
    [ "$(uname -m)" = aarch64 ] && [ "$(cat /proc/1/comm)" = systemd ] \
        && echo "kernel $(uname -r), $(nproc) CPUs, PID 1 systemd" || {
        echo "uname -m $(uname -m), PID 1 $(cat /proc/1/comm)"
        return 1
    }
}

dpkg_install() {
    dpkg -i /share/lb.deb && dpkg-query -W -f '${Architecture}' lb | grep -qx arm64 \
        && [ -x /usr/sbin/lb ] && lb --version
}

# systemctl start lb: ready (Type=notify), XDP in generic mode on DEVS.
lb_started() {
    lb check --config /etc/lb/lb.toml || return 1
    systemctl start lb || { journalctl -u lb -n 20 --no-pager; return 1; }
    [ "$(systemctl show -p ActiveState --value lb)" = active ] || return 1
    for dev in "$@"; do
        ip -d link show "$dev" | grep -q xdpgeneric || {
            echo "$dev has no generic XDP program:"
            ip -d link show "$dev"
            return 1
        }
    done
    lb status | grep -q "$VIP:80" || { lb status; return 1; }
}

# Every real server answers through the VIP within 60 requests.
all_answer() {
    local seen="" body
    for _ in $(seq 60); do
        body=$(ns client curl -sS --max-time 10 "http://$VIP/") || {
            echo "curl failed"
            lb status
            return 1
        }
        case " $seen " in *" $body "*) ;; *) seen="$seen $body" ;; esac
        [ "$(echo "$seen" | wc -w)" = 3 ] && { echo "answered:$seen"; return 0; }
    done
    echo "only$seen answered in 60 requests"
    return 1
}

# ab N C through the VIP: every request completes with a 2xx, and every
# real server took a share (from its access log).
ab_through_vip() {
    local before=() out i
    for i in 1 2 3; do before[i]=$(served "$i"); done
    out=$(ns client ab -q -s 30 -n "$1" -c "$2" "http://$VIP/" 2>&1) || { echo "$out"; return 1; }
    echo "$out" | grep -E '^(Complete|Failed|Non-2xx|Requests per second)'
    echo "$out" | grep -qE "^Complete requests: +$1\$" || return 1
    echo "$out" | grep -qE '^Failed requests: +0$' || return 1
    echo "$out" | grep -q '^Non-2xx' && return 1
    for i in 1 2 3; do
        [ $(($(served "$i") - before[i])) -gt 0 ] || { echo "realserver$i took none"; return 1; }
    done
}

big_download() {
    local size
    size=$(ns client curl -sS -o /dev/null --max-time 60 -w '%{size_download}' "http://$VIP/big.bin") || return 1
    [ "$size" = 1048576 ] || { echo "downloaded $size of 1048576 bytes"; return 1; }
}

# DR's point: the real servers answer the client directly, so the
# balancer's interface receives the requests and ACKs of a 1 MiB download
# (tens of KiB), not the reply.
reply_bypasses_balancer() {
    local before after
    before=$(cat /sys/class/net/lb0/statistics/rx_bytes)
    big_download || return 1
    after=$(cat /sys/class/net/lb0/statistics/rx_bytes)
    echo "lb0 received $((after - before)) bytes"
    [ $((after - before)) -lt 524288 ]
}

lb_stopped_and_unloaded() {
    systemctl stop lb && lb unload || return 1
    for dev in "$@"; do
        ! ip -d link show "$dev" | grep -q xdp || { echo "$dev still has XDP"; return 1; }
    done
}

# One ab run of the seed 001 workload; prints requests/s.
ab_rate() {
    ns client ab -q -s 30 -n "$REQUESTS" -c "$CONCURRENCY" "http://$VIP/" 2>&1 \
        | awk '/^Failed requests/ && $3 != 0 { bad = 1 } /^Requests per second/ { r = $4 } END { if (bad || r == "") exit 1; print r }'
}

ipvs_on() {
    ipvsadm -A -t "$VIP:80" -s rr || return 1
    for i in 1 2 3; do ipvsadm -a -t "$VIP:80" -r "172.16.14.12$i:80" -m -w 1 || return 1; done
}

# Rounds of lb (generic, under systemd) then IPVS NAT, each on the same
# topology; BENCH lines for the host to take the ratio of.
bench() {
    local r rate
    for r in $(seq "$ROUNDS"); do
        systemctl start lb || return 1
        rate=$(ab_rate) || { echo "lb round $r: ab failed"; return 1; }
        echo "BENCH lb $r $rate" >> /tmp/bench.txt
        systemctl stop lb && lb unload || return 1
        ipvs_on || return 1
        rate=$(ab_rate) || { echo "ipvs round $r: ab failed"; ipvsadm -Ln --stats; return 1; }
        echo "BENCH ipvs $r $rate" >> /tmp/bench.txt
        ipvsadm -C
    done
}

modprobe -a veth bridge ip_vs ip_vs_rr 2>/dev/null
echo "test-arm64 VM: $(uname -m) $(uname -r), requests $REQUESTS, concurrency $CONCURRENCY, rounds $ROUNDS"
run_check "VM: aarch64, systemd as PID 1" vm_is_arm64
run_check "dpkg -i lb_*_arm64.deb" dpkg_install || { echo DONE; exit 0; }

nat_topology
write_config nat '"lb0", "lb1"' 172.16.14
run_check "nat: systemctl start lb (generic XDP on lb0, lb1), lb status" lb_started lb0 lb1
run_check "nat: curl through the VIP reaches all 3 real servers" all_answer
run_check "nat: ab -n 300 -c 10 through the VIP, all 2xx, every server a share" ab_through_vip 300 10
run_check "nat: 1 MiB download through the VIP arrives whole" big_download
run_check "nat: systemctl stop lb, lb unload detaches XDP" lb_stopped_and_unloaded lb0 lb1

# The seed 001 workload, lb against IPVS, on this same NAT topology.
rm -f /tmp/bench.txt
run_check "bench: lb generic and IPVS NAT, $ROUNDS rounds of ab -n $REQUESTS -c $CONCURRENCY" bench
cat /tmp/bench.txt 2>/dev/null
systemctl stop lb 2>/dev/null
lb unload > /dev/null 2>&1
ipvsadm -C
teardown

dr_topology
write_config dr '"lb0"' 192.168.253
run_check "dr: systemctl start lb (generic XDP on lb0), lb status" lb_started lb0
run_check "dr: curl through the VIP reaches all 3 real servers" all_answer
run_check "dr: ab -n 300 -c 10 through the VIP, all 2xx, every server a share" ab_through_vip 300 10
run_check "dr: 1 MiB download arrives whole, the reply bypassing the balancer" reply_bypasses_balancer
run_check "dr: systemctl stop lb, lb unload detaches XDP" lb_stopped_and_unloaded lb0
teardown
echo DONE
