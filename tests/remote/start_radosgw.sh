#!/usr/bin/env bash
# Starts a one-node Ceph cluster (one monitor, one OSD on memory) and
# radosgw, Ceph's S3 gateway, on loopback; for the remote-store tests.
#   start_radosgw.sh DIR PORT   -> prints "ACCESS SECRET" once S3 answers
#   start_radosgw.sh --stop DIR
# Everything lives in DIR (config, data, logs, pids); nothing system-wide is
# touched. Needs Debian's ceph-mon, ceph-osd and radosgw (scripts/setup.sh).
set -uo pipefail
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
conf=$dir/ceph.conf
access=THAWTESTACCESSKEY0001
secret=thaw-test-secret-key-not-for-production

# One attempt: a fresh cluster in $dir; exit status 0 once radosgw answers.
# (On a loaded machine the OSD has come up with a zero cluster fsid and
# exited; the attempt then fails fast and the next starts clean.)
attempt() {
  "$0" --stop "$dir"
  rm -rf "$dir"; mkdir -p "$dir"/{mon,osd/osd.0,run,log}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
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
  monmaptool --create --addv a "[v1:127.0.0.1:$monport]" --fsid "$fsid" "$dir/monmap" >/dev/null || return 1
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >/dev/null || return 1
  ceph-mon -c "$conf" -i a || return 1
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  timeout 60 ceph -c "$conf" osd new "$osd_uuid" 0 >/dev/null || return 1
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 || return 1
  ceph-osd -c "$conf" -i 0 || return 1
  # The OSD must be up before radosgw creates its pools.
  local up=0
  for i in $(seq 1 60); do
    if timeout 10 ceph -c "$conf" osd stat 2>/dev/null | grep -q "1 up"; then
      up=1; break
    fi
    pgrep -f -- "ceph-osd -c $conf" >/dev/null || return 1
    sleep 0.5
  done
  [ $up = 1 ] || return 1
  radosgw -c "$conf" -n client.rgw || return 1
  for i in $(seq 1 120); do
    if timeout 20 radosgw-admin -c "$conf" user create --uid=thaw --display-name=thaw \
         --access-key=$access --secret=$secret >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
  for i in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 1
  done
  return 1
}

for try in 1 2 3; do
  if attempt; then
    echo "$access $secret"
    exit 0
  fi
  echo "start_radosgw.sh: attempt $try failed; logs in $dir/log" >&2
  tail -5 "$dir"/log/*.log >&2 2>/dev/null || true
done
"$0" --stop "$dir"
echo "radosgw did not answer on port $port after 3 attempts" >&2
exit 1
