#!/bin/sh
# puppet-bootstrap.sh: first boot of a Puppet node registered with espm, in one of two key modes.
#
#   provider: the certificate espm signed in advance and its key are installed (--cert, --key).
#   instance: the node makes its own key; a one-time enrollment token (--token-file) goes into
#             csr_attributes.yaml as challengePassword, with the allowed extensions (--extension)
#             and, on EC2, pp_instance_id from the instance metadata service; Puppet Server's
#             autosign policy (espm autosign) signs the CSR, and the agent waits for it, at most
#             --maxwaitforcert seconds. csr_attributes.yaml is removed after the run.
#
# Either way it installs the CA bundle (--ca), or has the agent download it and check it against
# its SHA-256 (--ca-fingerprint, Puppet's ca_fingerprint: 64 hex digits instead of a 4 KB bundle),
# points puppet.conf's [agent] at the master, and runs the Puppet agent once. Running it again
# converges to the same state: files rewritten, one hosts entry, the agent run again. POSIX sh; works with Puppet's AIO packages and Debian's.
#
# usage: puppet-bootstrap.sh --certname NAME --master HOST|IP (--ca FILE | --ca-fingerprint SHA256)
#          (--cert FILE --key FILE | --token-file FILE [--extension pp_NAME=VALUE]...
#           [--instance-id ID] [--maxwaitforcert 600])
#          [--port 8140] [--environment ENV] [--logdest FILE]
#          [--before FILE] [--after FILE] [--on-failure FILE]   (POSIX sh fragments: hooks)
#          [--facts FILE [--factsdir DIR]] [--install-agent distro|none]
#          [--confdir DIR] [--vardir DIR] [--ssldir DIR]     (defaults: Puppet's own)
#
# Hooks run with sh, their output appended to the log: --before first of all (it may set the
# hostname, mount a volume, install packages), --after once the agent succeeded, --on-failure once
# it failed. They see ESPM_CERTNAME, ESPM_LOG and, after the run, ESPM_AGENT_EXIT. A hook that fails
# stops the bootstrap with its own exit code. --facts is a YAML file of external facts, installed as
# espm.yaml in Facter's facts.d before the run. --install-agent distro installs puppet-agent from
# the distribution's packages (apt or dnf) when puppet is missing.
#
# Exit status: 0 when the agent exits 0 (no changes) or 2 (changes applied); the agent's own
# code when it exits 1, 4 or 6 (failure); 64 for bad usage; 69 when puppet is missing.
set -u

die() { echo "puppet-bootstrap: $1" >&2; exit "${2:-64}"; }

certname= master= port=8140 environment= cert= key= ca= ca_fingerprint= logdest=/var/log/puppet-bootstrap.log
confdir= vardir= ssldir= token_file= extensions= instance_id= maxwaitforcert=600
before= after= on_failure= facts= factsdir= install_agent=none
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "option $1 needs a value"
  case "$1" in
    --certname) certname=$2 ;;
    --master) master=$2 ;;
    --port) port=$2 ;;
    --environment) environment=$2 ;;
    --cert) cert=$2 ;;
    --key) key=$2 ;;
    --ca) ca=$2 ;;
    --ca-fingerprint) ca_fingerprint=$2 ;;
    --logdest) logdest=$2 ;;
    --confdir) confdir=$2 ;;
    --vardir) vardir=$2 ;;
    --ssldir) ssldir=$2 ;;
    --token-file) token_file=$2 ;;
    --extension) extensions="$extensions
$2" ;;
    --instance-id) instance_id=$2 ;;
    --maxwaitforcert) maxwaitforcert=$2 ;;
    --before) before=$2 ;;
    --after) after=$2 ;;
    --on-failure) on_failure=$2 ;;
    --facts) facts=$2 ;;
    --factsdir) factsdir=$2 ;;
    --install-agent) install_agent=$2 ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done

[ -n "$certname" ] || die "--certname is required"
[ -n "$master" ] || die "--master is required"
if [ -n "$ca_fingerprint" ]; then
  [ -z "$ca" ] || die "give either --ca or --ca-fingerprint, not both"
  case "$ca_fingerprint" in
    *[!0-9a-fA-F]*) die "--ca-fingerprint must be the CA bundle's SHA-256 in 64 hex digits (got '$ca_fingerprint')" ;;
  esac
  [ ${#ca_fingerprint} -eq 64 ] || die "--ca-fingerprint must be the CA bundle's SHA-256 in 64 hex digits (got '$ca_fingerprint')"
else
  [ -n "$ca" ] && [ -r "$ca" ] || die "--ca must name a readable PEM file (got '$ca'), or give --ca-fingerprint"
fi
if [ -n "$token_file" ]; then
  [ -z "$cert$key" ] || die "give either --cert and --key (provider key mode) or --token-file (instance key mode), not both"
  [ -r "$token_file" ] || die "--token-file must name a readable file (got '$token_file')"
  case "$maxwaitforcert" in ''|*[!0-9]*) die "--maxwaitforcert must be a number of seconds" ;; esac
  old_ifs=$IFS; IFS='
'
  for e in $extensions; do
    case "$e" in pp_*=*) ;; *) die "--extension takes pp_NAME=VALUE (got '$e')" ;; esac
    case "$e" in *"'"*|*\\*) die "--extension values cannot hold quotes or backslashes (got '$e')" ;; esac
  done
  IFS=$old_ifs
else
  for f in "$cert" "$key"; do
    [ -n "$f" ] && [ -r "$f" ] || die "--cert and --key must name readable PEM files (got '$f'), or give --token-file"
  done
fi
case "$certname" in *[!a-z0-9._-]*|.*|-*|*.|*-|*..*) die "certname '$certname' is not a valid Puppet certname" ;; esac
for f in "$before" "$after" "$on_failure" "$facts"; do
  [ -z "$f" ] || [ -r "$f" ] || die "--before, --after, --on-failure and --facts must name readable files (got '$f')"
done
case "$install_agent" in distro|none) ;; *) die "--install-agent takes distro or none" ;; esac
case "$port" in ''|*[!0-9]*) die "--port must be a number" ;; esac

mkdir -p "$(dirname "$logdest")"
export ESPM_CERTNAME="$certname" ESPM_LOG="$logdest"

# A hook: its output in the log; its failure is the bootstrap's, with its own exit code.
run_hook() {
  [ -n "$2" ] || return 0
  echo "puppet-bootstrap: running the $1 hook" >> "$logdest"
  sh "$2" >> "$logdest" 2>&1
  hook_code=$?
  if [ "$hook_code" -ne 0 ]; then
    echo "puppet-bootstrap: the $1 hook failed (exit $hook_code); see $logdest" | tee -a "$logdest" >&2
    exit "$hook_code"
  fi
  echo "puppet-bootstrap: the $1 hook succeeded" >> "$logdest"
}
run_hook before "$before"

# Puppet's AIO packages live in /opt/puppetlabs/bin, which a first-boot PATH may lack.
PATH="$PATH:/opt/puppetlabs/bin:/opt/puppetlabs/puppet/bin"
if [ "$install_agent" = distro ] && ! command -v puppet >/dev/null 2>&1; then
  started=$(date +%s)
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && { apt-get install -y -q puppet-agent || apt-get install -y -q puppet; }; } >> "$logdest" 2>&1
  elif command -v dnf >/dev/null 2>&1; then
    { dnf install -y puppet-agent || dnf install -y puppet; } >> "$logdest" 2>&1
  else
    die "--install-agent distro: this image has neither apt-get nor dnf" 69
  fi
  command -v puppet >/dev/null 2>&1 || die "installing puppet-agent from the distribution's packages failed; see $logdest" 69
  echo "puppet-bootstrap: installed puppet-agent from the distribution's packages in $(( $(date +%s) - started )) s" | tee -a "$logdest"
fi
command -v puppet >/dev/null 2>&1 || die "puppet is not installed on this image (--install-agent distro installs it)" 69

# Path options passed to every puppet command, so a sandboxed run never touches the system's files.
set --
[ -n "$confdir" ] && set -- "$@" --confdir "$confdir"
[ -n "$vardir" ] && set -- "$@" --vardir "$vardir"
[ -n "$ssldir" ] && set -- "$@" --ssldir "$ssldir"

# A puppet service the image started would race this run and leave a pending CSR at the master.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet puppet 2>/dev/null; then
  systemctl stop puppet
elif command -v service >/dev/null 2>&1 && service puppet status >/dev/null 2>&1; then
  service puppet stop >/dev/null 2>&1 || true
fi

# Where this Puppet keeps its files, asked of Puppet itself (AIO and Debian differ). With a
# fingerprint, the same call shows this Puppet knows ca_fingerprint (Puppet 5 does not).
if [ -n "$ca_fingerprint" ]; then
  settings=$(puppet config print confdir ssldir certdir privatekeydir localcacert csr_attributes ca_fingerprint \
    --section agent --ca_fingerprint "$ca_fingerprint" "$@") ||
    die "puppet config print failed; a Puppet older than 6 cannot check --ca-fingerprint: give --ca with the CA bundle" 69
else
  settings=$(puppet config print confdir ssldir certdir privatekeydir localcacert csr_attributes --section agent "$@") || die "puppet config print failed" 69
fi
setting() { printf '%s\n' "$settings" | sed -n "s/^$1 = //p"; }
[ -z "$ca_fingerprint" ] || [ "$(setting ca_fingerprint)" = "$ca_fingerprint" ] ||
  die "this Puppet does not take ca_fingerprint: give --ca with the CA bundle" 69
confdir=$(setting confdir)
certdir=$(setting certdir)
privatekeydir=$(setting privatekeydir)
localcacert=$(setting localcacert)
ssldir=$(setting ssldir)
csr_attributes=$(setting csr_attributes)

# The master given as an IP address: agents reach it as "puppet" through one hosts line, as the
# original espm did; the master's certificate must carry "puppet" among its names.
server=$master
case "$master" in
  *[!0-9.]*) case "$master" in *:*) is_ip=yes ;; *) is_ip=no ;; esac ;;
  *) is_ip=yes ;;
esac
if [ "$is_ip" = yes ]; then
  server=puppet
  hosts=/etc/hosts
  tmp=$(mktemp)
  grep -v '[[:space:]]puppet[[:space:]]puppetmaster[[:space:]]*\(#.*\)\{0,1\}$' "$hosts" > "$tmp" || true
  printf '%s puppet puppetmaster # espm bootstrap\n' "$master" >> "$tmp"
  # Rewrite in place rather than rename: /etc/hosts may be a bind mount (containers, sandboxes).
  cat "$tmp" > "$hosts"
  rm -f "$tmp"
fi

# SSL files: directories as Puppet makes them, the key readable by its owner (and group) only.
umask 022
mkdir -p "$certdir" "$privatekeydir" "$(dirname "$localcacert")"
chmod 0771 "$ssldir" 2>/dev/null || true
chmod 0750 "$privatekeydir"
if [ -n "$ca_fingerprint" ]; then
  # The agent checks a fingerprint only when it downloads the bundle: none may be there already.
  rm -f "$localcacert"
  set -- "$@" --ca_fingerprint "$ca_fingerprint"
else
  cp "$ca" "$localcacert" && chmod 0644 "$localcacert"
fi
if [ -z "$token_file" ]; then
  cp "$cert" "$certdir/$certname.pem" && chmod 0644 "$certdir/$certname.pem"
  (umask 027 && cp "$key" "$privatekeydir/$certname.pem") && chmod 0640 "$privatekeydir/$certname.pem"
  if getent group puppet >/dev/null 2>&1; then
    chgrp puppet "$privatekeydir" "$privatekeydir/$certname.pem" 2>/dev/null || true
  fi
else
  # The instance's id from EC2's metadata service (IMDSv2), when there is one, as pp_instance_id.
  if [ -z "$instance_id" ] && command -v curl >/dev/null 2>&1; then
    imds=http://169.254.169.254/latest
    imds_token=$(curl -sf --connect-timeout 1 --max-time 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$imds/api/token" 2>/dev/null) &&
      instance_id=$(curl -sf --connect-timeout 1 --max-time 2 -H "X-aws-ec2-metadata-token: $imds_token" "$imds/meta-data/instance-id" 2>/dev/null) ||
      instance_id=
  fi
  case "$instance_id" in *[!A-Za-z0-9-]*) instance_id= ;; esac
  # The token goes in challengePassword, readable by root only, and is removed after the run.
  mkdir -p "$(dirname "$csr_attributes")"
  (
    umask 077
    printf '%s\n' '---' 'custom_attributes:'
    printf "  challengePassword: '%s'\n" "$(tr -cd 'A-Za-z0-9' < "$token_file")"
    if [ -n "$extensions$instance_id" ]; then
      printf 'extension_requests:\n'
      IFS='
'
      for e in $extensions; do printf "  %s: '%s'\n" "${e%%=*}" "${e#*=}"; done
      IFS=$old_ifs
      [ -z "$instance_id" ] || printf "  pp_instance_id: '%s'\n" "$instance_id"
    fi
  ) > "$csr_attributes"
  chmod 0600 "$csr_attributes"
  [ -n "$instance_id" ] && echo "puppet-bootstrap: pp_instance_id $instance_id from the instance metadata service"
fi

# puppet.conf: certname, server and port (and environment) in [agent], everything else kept.
conf="$confdir/puppet.conf"
mkdir -p "$confdir"
[ -f "$conf" ] || : > "$conf"
tmp=$(mktemp)
awk -v certname="$certname" -v server="$server" -v port="$port" -v env="$environment" '
  function ours() {
    print "certname = " certname; print "server = " server; print "serverport = " port
    if (env != "") print "environment = " env
  }
  /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]\[\]]/, "", section); print; if (section == "agent") { ours(); done = 1 }; next }
  section == "agent" && /^[[:space:]]*(certname|server|serverport|environment)[[:space:]]*=/ { next }
  { print }
  END { if (!done) { print "[agent]"; ours() } }
' "$conf" > "$tmp"
cat "$tmp" > "$conf"
rm -f "$tmp"

# External facts for the first catalog: Facter reads facts.d (AIO: /etc/puppetlabs/facter/facts.d).
if [ -n "$facts" ]; then
  if [ -z "$factsdir" ]; then
    factsdir=/etc/facter/facts.d
    [ -d /opt/puppetlabs/puppet ] && factsdir=/etc/puppetlabs/facter/facts.d
  fi
  mkdir -p "$factsdir"
  cp "$facts" "$factsdir/espm.yaml" && chmod 0644 "$factsdir/espm.yaml"
fi

echo "puppet-bootstrap: running puppet agent for $certname against $server:$port (log: $logdest)"
# --no-usecacheonfailure: a refused or failed catalog request must fail this run, not quietly
# re-apply a catalog cached by an earlier run.
if [ -n "$token_file" ]; then
  # Submit our own CSR and wait for espm's policy to sign it, polling every 10 s, never forever.
  # --http_keepalive_timeout 0: Puppet Server 7.9.5 stalled the agent's next request on the connection
  # that carried the CSR, while the policy ran, for 30 s (measured); a new connection each time does not.
  puppet agent --onetime --no-daemonize --detailed-exitcodes --waitforcert 10 --maxwaitforcert "$maxwaitforcert" \
    --http_keepalive_timeout 0 --no-usecacheonfailure --logdest "$logdest" "$@"
  code=$?
  rm -f "$csr_attributes"
else
  puppet agent --onetime --no-daemonize --detailed-exitcodes --waitforcert 0 --no-usecacheonfailure --logdest "$logdest" "$@"
  code=$?
fi
export ESPM_AGENT_EXIT="$code"
case "$code" in
  0|2)
    echo "puppet-bootstrap: first run succeeded (agent exit $code)"
    run_hook after "$after"
    exit 0 ;;
  *)
    echo "puppet-bootstrap: first run failed (agent exit $code); Puppet's errors from $logdest:" >&2
    grep 'Puppet (err)' "$logdest" 2>/dev/null | tail -n 20 >&2
    run_hook on-failure "$on_failure"
    exit "$code" ;;
esac
