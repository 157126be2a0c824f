#!/usr/bin/env bash
# Signal this pod's database server: the drills' kill (KILL) and hang (STOP,
# then CONT) faults, and fencing a primary that stopped answering. Run in the
# server container by an exec; the pod shares one process namespace, so the
# server is not PID 1 there and KILL and STOP reach it.
set -euo pipefail

signal=${1:?usage: signal-server.sh KILL|STOP|CONT}
pid_file=${RUN_DIR:?}/mysqld.pid
pid=$(cat "$pid_file" 2>/dev/null || true)
# The file outlives a killed server: make sure the pid is still a server's.
comm=$(cat "/proc/${pid:-0}/comm" 2>/dev/null || true)
if [[ $comm != mariadbd && $comm != mysqld ]]; then
  # A hung server killed to fence it, then restarted: nothing left to resume.
  [[ $signal == CONT ]] && { echo "no server is running: nothing to resume"; exit 0; }
  echo "no server is running (pid file $pid_file: ${pid:-none})" >&2
  exit 3
fi
kill -s "$signal" "$pid"
echo "sent SIG$signal to the server (pid $pid)"
