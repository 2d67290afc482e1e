#!/bin/sh
# Sets espm up on a Puppet server: the operator guide of docs/operator.md as one script, run as root after
# `npm install -g ./espm-agent-*.tgz`.
#   operator-guide.sh             set espm up, step by step
#   operator-guide.sh --dry-run   print the diff of every file it would change, and change nothing
# Every step can run again: what is already as it should be is left alone, so after a failure fix
# what it names and run it again (STOP_AFTER=N stops after step N, to go a step at a time). Before
# it changes a file of the site's, it keeps the site's own as FILE.before-espm (once: a second run
# keeps the first). Puppet Server's auth.conf is read the way Puppet Server reads it before any
# reload, and if Puppet Server does not come back from the reload every file goes back as it was.
# The defaults are Debian 12's puppetserver; LAYOUT=aio takes the paths of Puppet's AIO packages.
# Set any variable below in the environment.
set -eu
DRY_RUN=false
case "${1:-}" in
  --dry-run) DRY_RUN=true ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
: "${CERTNAME_PATTERN:?set CERTNAME_PATTERN to the names espm may sign, e.g. CERTNAME_PATTERN='*.nodes.example.com'}"
case "${LAYOUT:-debian}" in
  debian) etc=/etc/puppet; ssl=/var/lib/puppet/ssl; server=/etc/puppet/puppetserver; bin=/usr/bin
          reportdir=/var/lib/puppetserver/reports; jar=/usr/share/puppetserver/puppetserver.jar ;;
  aio)    etc=/etc/puppetlabs/puppet; ssl=/etc/puppetlabs/puppet/ssl; server=/etc/puppetlabs/puppetserver
          bin=/opt/puppetlabs/bin; reportdir=/opt/puppetlabs/server/data/puppetserver/reports
          jar=/opt/puppetlabs/server/apps/puppetserver/puppet-server-release.jar ;;
  *) echo "LAYOUT is debian or aio, not $LAYOUT" >&2; exit 2 ;;
esac
ESPM_HOST=${ESPM_HOST:-$(hostname -f 2>/dev/null || hostname)}     # the name Pulumi programs reach espm by
ESPM_PORT=${ESPM_PORT:-8443}
ESPM_LISTEN=${ESPM_LISTEN:-0.0.0.0}                                 # the address espm listens on (one interface, or 0.0.0.0)
PUPPET_URL=${PUPPET_URL:-https://$ESPM_HOST:8140}
CONFIG_DIR=${CONFIG_DIR:-/opt/espm/etc}
STATE_DIR=${STATE_DIR:-/var/lib/espm}
PUPPET_CA=${PUPPET_CA:-$ssl/certs/ca.pem}
PUPPET_CONF=${PUPPET_CONF:-$etc/puppet.conf}
AUTH_CONF=${AUTH_CONF:-$server/conf.d/auth.conf}
REPORT_DIR=${REPORT_DIR:-$reportdir}
PUPPET=${PUPPET:-$bin/puppet}
PUPPETSERVER_USER=${PUPPETSERVER_USER:-puppet}
PUPPETSERVER_JAR=${PUPPETSERVER_JAR:-$jar}                          # its parser checks auth.conf before a reload
PUPPETSERVER_JAVA=${PUPPETSERVER_JAVA:-java}
CA_SIGN=${CA_SIGN:-$bin/puppetserver ca sign --certname espm}
RELOAD_PUPPETSERVER=${RELOAD_PUPPETSERVER:-systemctl reload puppetserver}
RESTART_PUPPETSERVER=${RESTART_PUPPETSERVER:-systemctl restart puppetserver}
PUPPETDB_URL=${PUPPETDB_URL:-}                                      # your PuppetDB (https://HOST:8081), if the site runs one
PUPPETDB_ALLOWLIST=${PUPPETDB_ALLOWLIST:-/etc/puppetdb/certificate-allowlist}   # the file its certificate-allowlist names
RESTART_PUPPETDB=${RESTART_PUPPETDB:-systemctl restart puppetdb}
UNIT_FILE=${UNIT_FILE:-/etc/systemd/system/espm.service}
ESPM=$(command -v espm) || { echo "espm is not on PATH: npm install -g ./espm-agent-*.tgz, with npm's bin directory ($(npm prefix -g)/bin) on PATH" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
changed=""                      # the files this run changed, each kept first in $work
done_step() {
  [ "${STOP_AFTER:-}" != "$1" ] || { echo "== stopped after step $1 (STOP_AFTER=$1): run again to go on"; exit 0; }
}
# put FILE NEW: NEW takes FILE's place (with FILE's owner and mode), unless they are the same. In a
# dry run, prints the diff instead.
put() {
  if [ -f "$1" ] && cmp -s "$1" "$2"; then echo "   $1: nothing to change"; return 0; fi
  if $DRY_RUN; then
    diff -u --label "$1" --label "$1 (with espm)" "$( [ -f "$1" ] && echo "$1" || echo /dev/null)" "$2" || true
    return 0
  fi
  if [ -f "$1" ]; then
    [ -e "$1.before-espm" ] || cp -p "$1" "$1.before-espm"
    cp -p "$1" "$work/$(printf %s "$1" | cksum | cut -d' ' -f1)"
    chown --reference="$1" "$2"; chmod --reference="$1" "$2"
  fi
  mv "$2" "$1"
  changed="$changed $1"
  echo "   $1: changed (the site's own is $1.before-espm)"
}
# Puts back every file this run changed.
restore() {
  for f in $changed; do
    kept="$work/$(printf %s "$f" | cksum | cut -d' ' -f1)"
    if [ -f "$kept" ]; then cp -p "$kept" "$f"; else rm -f "$f"; fi
    echo "   $f: restored" >&2
  done
}
# Says whether Puppet Server answers "running" within two minutes.
answers() {
  i=0
  while [ $i -lt 60 ]; do
    [ "$(curl -fsS --cacert "$PUPPET_CA" "$PUPPET_URL/status/v1/simple" 2>/dev/null)" = running ] && return 0
    sleep 2; i=$((i + 1))
  done
  return 1
}
would() { if $DRY_RUN; then echo "   would: $*"; else "$@"; fi; }

echo "== 1. espm's own user and group; Puppet Server's user reads espm's export through espm's group (espm is NOT in Puppet Server's group: the CA's keys are readable by that group)"
id espm >/dev/null 2>&1 || would useradd --system --user-group --home-dir "$STATE_DIR" --shell /usr/sbin/nologin espm
id -nG "$PUPPETSERVER_USER" | tr ' ' '\n' | grep -qx espm || would usermod -aG espm "$PUPPETSERVER_USER"
# An earlier espm guide put espm in Puppet Server's group.
if id -nG espm 2>/dev/null | tr ' ' '\n' | grep -qx "$(id -gn "$PUPPETSERVER_USER")"; then
  would gpasswd -d espm "$(id -gn "$PUPPETSERVER_USER")"
fi
done_step 1

echo "== 2. espm's directories: $CONFIG_DIR (root:espm 0750), $STATE_DIR (espm:espm 0750)"
would install -d -o root -g espm -m 0750 "$CONFIG_DIR" "$CONFIG_DIR/certs"
would install -d -o espm -g espm -m 0750 "$STATE_DIR"
if [ -z "$PUPPETDB_URL" ]; then
  # Without PuppetDB espm reads the runs from the reports Puppet Server stores: an ACL lets espm's
  # user (only it) read them, and reach them through the directories above.
  command -v setfacl >/dev/null || { echo "setfacl is not installed: apt-get install acl, and run this again" >&2; exit 1; }
  would setfacl -R -m u:espm:rX -m d:u:espm:rX "$REPORT_DIR"
  parent=$(dirname "$REPORT_DIR")
  while [ "$parent" != / ]; do would setfacl -m u:espm:x "$parent"; parent=$(dirname "$parent"); done
fi
done_step 2

echo "== 3. espm's config, PSK and TLS certificate; the site's own ENC and autosign policy become espm's fallbacks"
ini=$CONFIG_DIR/espm.ini
if [ -f "$ini" ]; then
  echo "   $ini is in place: keeping it (espm-setup never overwrites; remove it to set espm up anew)"
else
  # With PuppetDB, espm deactivates the nodes it deletes there and reads their runs there; without
  # it, espm reads the reports Puppet Server stores.
  if [ -n "$PUPPETDB_URL" ]; then set -- --puppetdb-url "$PUPPETDB_URL"; else set -- --puppetserver-reportdir "$REPORT_DIR"; fi
  # Every node espm did not make keeps the site's classification and signing: espm runs the ENC and
  # the autosign policy Puppet Server uses now as its fallbacks. What espm cannot chain stops the
  # guide here, before anything of the site's is changed.
  site_terminus=$("$PUPPET" config print --config "$PUPPET_CONF" --section server node_terminus)
  site_enc=$("$PUPPET" config print --config "$PUPPET_CONF" --section server external_nodes)
  site_autosign=$("$PUPPET" config print --config "$PUPPET_CONF" --section server autosign)
  case "$site_terminus" in
    plain) ;;
    exec)
      if [ ! -f "$site_enc" ] || [ ! -x "$site_enc" ]; then
        echo "external_nodes is '$site_enc'; espm runs the site's ENC as one executable file given the certname: put that command in a script, set external_nodes to it, and run this again" >&2
        exit 1
      fi
      set -- "$@" --fallback-enc "$site_enc" ;;
    *) echo "node_terminus is $site_terminus; espm classifies through node_terminus = exec with the site's ENC as its fallback, and cannot chain this one" >&2; exit 1 ;;
  esac
  case "$site_autosign" in
    false) ;;
    true) echo "autosign = true signs every request; espm's policy would end that: set autosign to false or to a policy executable, and run this again" >&2; exit 1 ;;
    *)
      if [ -f "$site_autosign" ] && [ -x "$site_autosign" ]; then
        set -- "$@" --autosign-fallback "$site_autosign"
      elif [ -f "$site_autosign" ]; then
        echo "autosign is the allowlist $site_autosign; espm chains a policy executable, not an allowlist: turn it into one (exit 0 for the names it lists), set autosign to it, and run this again" >&2
        exit 1
      fi ;; # no such file: the site autosigns nothing today
  esac
  if $DRY_RUN; then ini=$work/espm.ini; mkdir -p "$work/certs"; fi
  ! getent group espm >/dev/null || set -- "$@" --export-group espm # none yet in a dry run
  espm-setup -d "$(dirname "$ini")" --state-dir "$STATE_DIR" --host "$ESPM_HOST" -p "$ESPM_PORT" --listen "$ESPM_LISTEN" \
    --certname-pattern "$CERTNAME_PATTERN" --export-group espm \
    --puppetserver-url "$PUPPET_URL" --puppetserver-ca "$PUPPET_CA" \
    --puppetserver-cert "$CONFIG_DIR/certs/espm-client.crt" --puppetserver-key "$CONFIG_DIR/certs/espm-client.key" \
    "$@" >"$work/setup.txt"
  if $DRY_RUN; then
    echo "   would write $CONFIG_DIR/espm.ini, psk, autosign.secret, groups.yaml, certs/espm.crt and certs/espm.key:"
    diff -u --label /dev/null --label "$CONFIG_DIR/espm.ini" /dev/null "$ini" | sed "s|$work|$CONFIG_DIR|g" || true
  else
    cat "$work/setup.txt"
    chown espm:espm "$CONFIG_DIR/psk" "$CONFIG_DIR/certs/espm.key"
  fi
fi
done_step 3

echo "== 4. espm's client certificate at Puppet Server (CN espm), signed by the CA's own CLI"
if [ -f "$CONFIG_DIR/certs/espm-client.crt" ]; then
  echo "   $CONFIG_DIR/certs/espm-client.crt is in place: keeping it"
elif $DRY_RUN; then
  echo "   would: espm enroll; $CA_SIGN; espm enroll"
else
  espm enroll -c "$ini"
  sh -c "$CA_SIGN"
  espm enroll -c "$ini"
  chown espm:espm "$CONFIG_DIR/certs/espm-client.crt" "$CONFIG_DIR/certs/espm-client.key"
fi
done_step 4

echo "== 5. Puppet Server: espm's auth.conf rules (checked as Puppet Server reads them), the ENC, espm's autosign policy and reports"
# Also writes the autosign wrapper espm-autosign beside espm.ini (root:espm, 0750), which runs espm autosign.
wrapper=$CONFIG_DIR/espm-autosign; if $DRY_RUN; then wrapper=$work/espm-autosign; fi
espm puppet-config -c "$ini" --auth-conf "$AUTH_CONF" --write "$work/auth.conf" --autosign-wrapper "$wrapper" >/dev/null
if ! cmp -s "$AUTH_CONF" "$work/auth.conf"; then
  espm check-auth-conf "$work/auth.conf" --java "$PUPPETSERVER_JAVA" --puppetserver-jar "$PUPPETSERVER_JAR" >/dev/null
  echo "   $AUTH_CONF with espm's rules: Puppet Server's own parser takes it"
fi
cp -p "$PUPPET_CONF" "$work/puppet.conf"
"$PUPPET" config set --config "$work/puppet.conf" --section server node_terminus exec
"$PUPPET" config set --config "$work/puppet.conf" --section server external_nodes "$ESPM enc -c $CONFIG_DIR/espm.ini"
"$PUPPET" config set --config "$work/puppet.conf" --section server autosign "$CONFIG_DIR/espm-autosign"
# Reports go where espm reads them (store or puppetdb), besides any report processors already set.
reports_to=store; [ -z "$PUPPETDB_URL" ] || reports_to=puppetdb
reports=$("$PUPPET" config print --config "$work/puppet.conf" --section server reports)
case ",$reports," in
  *",$reports_to,"*) ;;
  ,none, | ,,) "$PUPPET" config set --config "$work/puppet.conf" --section server reports "$reports_to" ;;
  *) "$PUPPET" config set --config "$work/puppet.conf" --section server reports "$reports,$reports_to" ;;
esac
put "$AUTH_CONF" "$work/auth.conf"
put "$PUPPET_CONF" "$work/puppet.conf"
# Puppet Server takes a new group only when it starts: a server running without espm's is restarted.
apply=$RELOAD_PUPPETSERVER; restart=false
if ps -o supgrp= -u "$PUPPETSERVER_USER" 2>/dev/null | grep -qv '\bespm\b'; then apply=$RESTART_PUPPETSERVER; restart=true; fi
if $DRY_RUN; then
  echo "   would: $apply (if anything changed)"
elif [ -n "$changed" ] || $restart; then
  echo "   $apply"
  if ! sh -c "$apply" || ! answers; then
    echo "Puppet Server did not come back from '$apply': putting every file back as it was" >&2
    restore
    sh -c "$RESTART_PUPPETSERVER" && answers || echo "Puppet Server does not answer at $PUPPET_URL even with its own files: see its log" >&2
    exit 1
  fi
  changed=""
fi
done_step 5

if [ -n "$PUPPETDB_URL" ]; then
  echo "== 6. PuppetDB: espm's certificate (CN espm) in its certificate allowlist, then a restart"
  # The allowlist is all or nothing: it lets espm submit ANY PuppetDB command and run any query, not
  # only the deactivation of the nodes it deletes. A PuppetDB without an allowlist already lets every
  # certificate its CA signed do all that, and needs no change.
  if [ -f "$PUPPETDB_ALLOWLIST" ]; then
    cp -p "$PUPPETDB_ALLOWLIST" "$work/allowlist"
    grep -qx espm "$work/allowlist" || echo espm >>"$work/allowlist"
    put "$PUPPETDB_ALLOWLIST" "$work/allowlist"
    if [ -n "$changed" ]; then sh -c "$RESTART_PUPPETDB"; changed=""; fi
  fi
fi
done_step 6

echo "== 7. espm's systemd unit, $UNIT_FILE: espm's user and group only, writing only in $STATE_DIR"
cat >"$work/espm.service" <<EOF
# espm, written by espm's operator guide for these directories.
[Unit]
Description=espm: Puppet node registration and certificate signing for Pulumi
After=network-online.target puppetserver.service
Wants=network-online.target

[Service]
Type=simple
User=espm
Group=espm
ExecStart=$ESPM -c $CONFIG_DIR/espm.ini
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure
RestartSec=5
# The store, the ENC export and the autosign socket are in $STATE_DIR (espm:espm 0750, made by
# the guide); Puppet Server's user reads them through espm's group. Everything else is read-only.
ReadWritePaths=$STATE_DIR
UMask=0027
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
DevicePolicy=closed
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
ProtectProc=invisible
RestrictSUIDSGID=true
RestrictNamespaces=true
RestrictRealtime=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=true
SystemCallArchitectures=native
SystemCallFilter=@system-service
# No capabilities: espm listens on an unprivileged port.
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
EOF
put "$UNIT_FILE" "$work/espm.service"
if ! $DRY_RUN && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
done_step 7

if $DRY_RUN; then echo "== dry run: nothing was changed"; exit 0; fi
echo "== done: start espm with systemctl enable --now espm (undo: put each FILE.before-espm back and reload Puppet Server)"
