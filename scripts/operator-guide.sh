#!/bin/sh
# Sets espm up on a Puppet server: the README's operator guide as one script, run as root after
# `npm install -g ./espm-agent-*.tgz`. The defaults are Debian 12's puppetserver (the AIO packages'
# paths are noted beside them); set any of them in the environment. It stops at the first failure.
set -eu
: "${CERTNAME_PATTERN:?set CERTNAME_PATTERN to the names espm may sign, e.g. CERTNAME_PATTERN='*.nodes.example.com'}"
ESPM_HOST=${ESPM_HOST:-$(hostname -f 2>/dev/null || hostname)}     # the name Pulumi programs reach espm by
ESPM_PORT=${ESPM_PORT:-8443}
ESPM_LISTEN=${ESPM_LISTEN:-0.0.0.0}                                 # the address espm listens on (one interface, or 0.0.0.0)
PUPPET_URL=${PUPPET_URL:-https://$ESPM_HOST:8140}
CONFIG_DIR=${CONFIG_DIR:-/opt/espm/etc}
STATE_DIR=${STATE_DIR:-/var/lib/espm}                               # systemd's StateDirectory=espm
PUPPET_CA=${PUPPET_CA:-/var/lib/puppet/ssl/certs/ca.pem}            # AIO: /etc/puppetlabs/puppet/ssl/certs/ca.pem
PUPPET_CONF=${PUPPET_CONF:-/etc/puppet/puppet.conf}                 # AIO: /etc/puppetlabs/puppet/puppet.conf
AUTH_CONF=${AUTH_CONF:-/etc/puppet/puppetserver/conf.d/auth.conf}   # AIO: /etc/puppetlabs/puppetserver/conf.d/auth.conf
REPORT_DIR=${REPORT_DIR:-/var/lib/puppetserver/reports}             # AIO: /opt/puppetlabs/server/data/puppetserver/reports
CA_SIGN=${CA_SIGN:-puppetserver ca sign --certname espm}
RELOAD_PUPPETSERVER=${RELOAD_PUPPETSERVER:-systemctl reload puppetserver}
PUPPETDB_URL=${PUPPETDB_URL:-}                                      # your PuppetDB (https://HOST:8081), if the site runs one
PUPPETDB_ALLOWLIST=${PUPPETDB_ALLOWLIST:-/etc/puppetdb/certificate-allowlist}   # the file its certificate-allowlist names
RESTART_PUPPETDB=${RESTART_PUPPETDB:-systemctl restart puppetdb}

echo "== 1. espm's own user, in Puppet Server's group (it reads stored reports; Puppet Server reads espm's export)"
id espm >/dev/null 2>&1 || useradd --system --user-group --home-dir "$STATE_DIR" --shell /usr/sbin/nologin espm
usermod -aG puppet espm

echo "== 2. espm's config, PSK and TLS certificate; the site's own ENC and autosign policy become espm's fallbacks"
mkdir -p "$CONFIG_DIR/certs"
# With PuppetDB, espm deactivates the nodes it deletes there and reads their runs there; without it,
# espm reads the reports Puppet Server stores.
if [ -n "$PUPPETDB_URL" ]; then
  set -- --puppetdb-url "$PUPPETDB_URL"; reports_to=puppetdb
else
  set -- --puppetserver-reportdir "$REPORT_DIR"; reports_to=store
fi
# Every node espm did not make keeps the site's classification and signing: espm runs the ENC and the
# autosign policy Puppet Server uses now as its fallbacks. What espm cannot chain stops the guide here,
# before anything is changed.
site_terminus=$(puppet config print --config "$PUPPET_CONF" --section server node_terminus)
site_enc=$(puppet config print --config "$PUPPET_CONF" --section server external_nodes)
site_autosign=$(puppet config print --config "$PUPPET_CONF" --section server autosign)
case "$site_terminus" in
  plain) ;;
  exec)
    case "$site_enc" in
      none | *" enc -c $CONFIG_DIR/espm.ini") ;;
      *)
        if [ ! -f "$site_enc" ] || [ ! -x "$site_enc" ]; then
          echo "external_nodes is '$site_enc'; espm runs the site's ENC as one executable file given the certname: put that command in a script, set external_nodes to it, and run this again" >&2
          exit 1
        fi
        set -- "$@" --fallback-enc "$site_enc" ;;
    esac ;;
  *) echo "node_terminus is $site_terminus; espm classifies through node_terminus = exec with the site's ENC as its fallback, and cannot chain this one" >&2; exit 1 ;;
esac
case "$site_autosign" in
  false | "$CONFIG_DIR/espm-autosign") ;;
  true) echo "autosign = true signs every request; espm's policy would end that: set autosign to false or to a policy executable, and run this again" >&2; exit 1 ;;
  *)
    if [ -f "$site_autosign" ] && [ -x "$site_autosign" ]; then
      set -- "$@" --autosign-fallback "$site_autosign"
    elif [ -f "$site_autosign" ]; then
      echo "autosign is the allowlist $site_autosign; espm chains a policy executable, not an allowlist: turn it into one (exit 0 for the names it lists), set autosign to it, and run this again" >&2
      exit 1
    fi ;; # no such file: the site autosigns nothing today
esac
espm-setup -d "$CONFIG_DIR" --state-dir "$STATE_DIR" --host "$ESPM_HOST" -p "$ESPM_PORT" --listen "$ESPM_LISTEN" \
  --certname-pattern "$CERTNAME_PATTERN" \
  --puppetserver-url "$PUPPET_URL" --puppetserver-ca "$PUPPET_CA" \
  --puppetserver-cert "$CONFIG_DIR/certs/espm-client.crt" --puppetserver-key "$CONFIG_DIR/certs/espm-client.key" \
  "$@"

echo "== 3. espm's client certificate at Puppet Server (CN espm), signed by the CA's own CLI"
espm enroll -c "$CONFIG_DIR/espm.ini"
sh -c "$CA_SIGN"
espm enroll -c "$CONFIG_DIR/espm.ini"
chown -R espm:espm "$CONFIG_DIR/certs" "$CONFIG_DIR/psk"

echo "== 4. Puppet Server: espm's auth.conf rules, the ENC, espm's autosign policy and stored reports, then a reload"
# Also writes the autosign wrapper $CONFIG_DIR/espm-autosign (root:puppet, 0750), which runs espm autosign.
espm puppet-config -c "$CONFIG_DIR/espm.ini" --auth-conf "$AUTH_CONF" --write "$AUTH_CONF.espm"
cp "$AUTH_CONF" "$AUTH_CONF.before-espm"
mv "$AUTH_CONF.espm" "$AUTH_CONF"
puppet config set --config "$PUPPET_CONF" --section server node_terminus exec
puppet config set --config "$PUPPET_CONF" --section server external_nodes "$(command -v espm) enc -c $CONFIG_DIR/espm.ini"
puppet config set --config "$PUPPET_CONF" --section server autosign "$CONFIG_DIR/espm-autosign"
# Reports go where espm reads them (store or puppetdb), besides any report processors already set.
reports=$(puppet config print --config "$PUPPET_CONF" --section server reports)
case ",$reports," in
  *",$reports_to,"*) ;;
  ,none, | ,,) puppet config set --config "$PUPPET_CONF" --section server reports "$reports_to" ;;
  *) puppet config set --config "$PUPPET_CONF" --section server reports "$reports,$reports_to" ;;
esac
sh -c "$RELOAD_PUPPETSERVER"

if [ -n "$PUPPETDB_URL" ]; then
  echo "== 5. PuppetDB: espm's certificate (CN espm) in its certificate allowlist, then a restart"
  # The allowlist is all or nothing: it lets espm submit ANY PuppetDB command and run any query, not
  # only the deactivation of the nodes it deletes. A PuppetDB without an allowlist already lets every
  # certificate its CA signed do all that, and needs no change.
  if [ -f "$PUPPETDB_ALLOWLIST" ] && ! grep -qx espm "$PUPPETDB_ALLOWLIST"; then
    echo espm >>"$PUPPETDB_ALLOWLIST"
    sh -c "$RESTART_PUPPETDB"
  fi
fi

echo "== done: review the change with diff $AUTH_CONF.before-espm $AUTH_CONF, then start espm (step 6)"
