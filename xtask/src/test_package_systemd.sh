# Run inside the booted package-test container (systemd as PID 1) by
# `cargo xtask test-package`: the unit's behaviour under systemd. Prints
# one `CHECK ok <name>` or `CHECK FAILED <name> -- <detail>` line per check.
check() { if [ "$2" = ok ]; then echo "CHECK ok $1"; else echo "CHECK FAILED $1 -- $3"; fi; }
export SYSTEMD_PAGER= LC_ALL=C
cat > /etc/lb/lb.toml <<'TOML'
[agent]
interfaces = ["lo"]
flow_table_size = 4096

[[virtual_server]]
name = "web"
address = "127.0.0.10"
port = 80
protocol = "tcp"
forwarding = "nat"

  [[virtual_server.real_server]]
  address = "127.0.0.11"
TOML
cp /etc/lb/lb.toml /tmp/good.toml

if systemctl start lb && [ "$(systemctl show -p StatusText --value lb)" = "running 1 virtual services" ] \
    && lb status | grep -q "127.0.0.10:80"; then
    check "systemctl start lb: active once READY=1, lb status answers" ok
else
    check "systemctl start lb: active once READY=1, lb status answers" no "$(systemctl status lb 2>&1 | tail -5)"
fi

pid=$(systemctl show -p MainPID --value lb)
caps=$(grep CapEff "/proc/$pid/status" | cut -f2)
# CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_PERFMON 38, CAP_BPF 39
[ "$caps" = 000000c000003000 ] && check "capabilities: CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_RAW only" ok \
    || check "capabilities: CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_RAW only" no "CapEff $caps"

sed -i 's/address = "127.0.0.11"/address = "127.0.0.11"\n  weight = 7/' /etc/lb/lb.toml
if systemctl reload lb && lb status --json | grep -q '"weight": *7'; then
    check "systemctl reload lb applies the file" ok
else
    check "systemctl reload lb applies the file" no "$(lb status --json | head -c 300)"
fi
echo 'bogus = ' >> /etc/lb/lb.toml
if ! systemctl reload lb 2>/dev/null && [ "$(systemctl show -p ActiveState --value lb)" = active ]; then
    check "a broken file: reload fails, the agent stays" ok
else
    check "a broken file: reload fails, the agent stays" no "reload succeeded or the unit stopped"
fi
cp /tmp/good.toml /etc/lb/lb.toml

systemctl stop lb
if [ -e /sys/fs/bpf/lb/link_lo ] && lb status --pinned | grep -q "127.0.0.10:80"; then
    check "systemctl stop lb: XDP stays with the maps pinned" ok
else
    check "systemctl stop lb: XDP stays with the maps pinned" no "$(ls /sys/fs/bpf/lb 2>&1)"
fi
systemctl start lb
if journalctl -u lb -n 30 --no-pager | grep -q "adopting the data plane pinned"; then
    check "systemctl start lb again adopts the pinned maps" ok
else
    check "systemctl start lb again adopts the pinned maps" no "no adoption in the journal"
fi

kill -9 "$(systemctl show -p MainPID --value lb)"
sleep 3
if [ "$(systemctl show -p NRestarts --value lb)" = 1 ] && [ "$(systemctl show -p ActiveState --value lb)" = active ]; then
    check "kill -9: Restart=on-failure restarts it" ok
else
    check "kill -9: Restart=on-failure restarts it" no "$(systemctl show -p NRestarts -p ActiveState lb)"
fi

echo 'bogus = ' >> /etc/lb/lb.toml
systemctl restart lb 2>/dev/null
sleep 3
if [ "$(systemctl show -p ExecMainStatus --value lb)" = 2 ] && [ "$(systemctl show -p NRestarts --value lb)" = 0 ] \
    && [ "$(systemctl show -p ActiveState --value lb)" = failed ]; then
    check "an invalid config: exit 2 and no restart loop" ok
else
    check "an invalid config: exit 2 and no restart loop" no "$(systemctl show -p ExecMainStatus -p NRestarts -p ActiveState lb)"
fi
cp /tmp/good.toml /etc/lb/lb.toml
systemctl reset-failed lb
systemctl start lb

dpkg -r lb >/dev/null 2>&1
if [ ! -e /sys/fs/bpf/lb ] && [ "$(systemctl show -p ActiveState --value lb)" = inactive ]; then
    check "dpkg -r lb stops the unit and unloads the data plane" ok
else
    check "dpkg -r lb stops the unit and unloads the data plane" no "$(ls /sys/fs/bpf/lb 2>&1)"
fi
