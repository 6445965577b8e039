#!/usr/bin/env bash
# Starts a one-node Ceph cluster (one monitor, one OSD on memory) and
# radosgw, Ceph's S3 gateway, on loopback; for the remote-store tests.
#   start_radosgw.sh DIR PORT   -> prints "ACCESS SECRET" once S3 answers
#   start_radosgw.sh --stop DIR
# Everything lives in DIR (config, data, logs, pids); nothing system-wide is
# touched. Needs Debian's ceph-mon, ceph-osd and radosgw (scripts/setup.sh).
set -euo pipefail
if [ "${1:-}" = "--stop" ]; then
  dir=$(realpath -m "$2")
  # Every daemon of this cluster names its config on its command line.
  pkill -f -- "-c $dir/ceph.conf" 2>/dev/null || true
  for i in $(seq 1 50); do
    pgrep -f -- "-c $dir/ceph.conf" >/dev/null || exit 0
    sleep 0.1
  done
  pkill -9 -f -- "-c $dir/ceph.conf" 2>/dev/null || true
  exit 0
fi
dir=$(realpath -m "$1"); port=$2
monport=$((port + 1))
rm -rf "$dir"; mkdir -p "$dir"/{mon,osd/osd.0,run,log}
fsid=$(cat /proc/sys/kernel/random/uuid)
conf=$dir/ceph.conf
cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$monport
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 2147483648
run dir = $dir/run
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
ms bind ipv6 = false
ms bind msgr2 = false
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
keyring = $dir/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw dns name = localhost
rgw thread pool size = 32
CONF
: >"$dir/keyring"
monmaptool --create --addv a "[v1:127.0.0.1:$monport]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null
ceph-mon -c "$conf" -i a
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
ceph -c "$conf" osd new "$osd_uuid" 0 >/dev/null
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
ceph-osd -c "$conf" -i 0
radosgw -c "$conf" -n client.rgw
access=THAWTESTACCESSKEY0001
secret=thaw-test-secret-key-not-for-production
for i in $(seq 1 120); do
  if radosgw-admin -c "$conf" user create --uid=thaw --display-name=thaw \
       --access-key=$access --secret=$secret >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
for i in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "$access $secret"
    exit 0
  fi
  sleep 1
done
echo "radosgw did not answer on port $port; logs in $dir/log" >&2
exit 1
