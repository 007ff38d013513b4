#!/usr/bin/env bash
# Install the OS packages the test-suite runs for real (redis-server; prometheus and
# alertmanager for the metrics features; PostgreSQL server binaries with pg_stat_statements and
# RabbitMQ with its management plugin for the database and queue commands) when they are
# missing. Debian/Ubuntu, as root or via sudo. The tests start private servers on free ports;
# the daemons these packages would start are kept from starting (or stopped), but a service
# that was already running before this script is never stopped.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# initdb/pg_ctl live in /usr/lib/postgresql/<version>/bin, off PATH; the package also creates
# the `postgres` OS user that runs them when we are root.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && compgen -G '/usr/lib/postgresql/*/lib/pg_stat_statements.so' >/dev/null \
  || need+=(postgresql)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Services of the packages about to be installed that run already: those are left alone.
services=(prometheus prometheus-alertmanager postgresql rabbitmq-server)
was_running=()
for svc in "${services[@]}"; do
  if $sudo service "$svc" status >/dev/null 2>&1; then was_running+=("$svc"); fi
done

# Debian's hook for "do not start daemons from maintainer scripts" (exit 101); only ours,
# never one that was there before.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

echo "installing OS packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# Belt and braces where a policy-rc.d existed and allowed starts: stop what we caused to run.
for svc in "${services[@]}"; do
  case " ${was_running[*]} " in *" $svc "*) continue ;; esac
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
